"""Drive load at a target: wrk for maximum throughput, the open-loop generator for latency.

Invariants: load only ever goes to 127.0.0.1 (a URL elsewhere is refused before anything is
sent); every run is bounded by its own duration plus a fixed allowance and is killed past it;
both tools run pinned to the load core.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

RUN_ALLOWANCE_S = 20.0
LOOPBACK = "127.0.0.1"
KEPT_UP_SHARE = 0.98


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run reports."""

    requests: int
    seconds: float
    requests_per_s: float
    socket_errors: int
    non_2xx: int


@dataclass(frozen=True)
class OpenLoopResult:
    """What one loadgen run reports; latencies in milliseconds; ``ok_total`` includes warm-up."""

    offered_rate: float
    achieved_rate: float
    ok: int
    ok_total: int
    errors: int
    dropped: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    send_lag_p99_ms: float
    first_error: str

    @property
    def kept_up(self) -> bool:
        """Whether the target served the offered load: no failures, and at least
        ``KEPT_UP_SHARE`` of the rate completed inside the window (a backlog growing by more than
        about 100 ms of load over a 5 s window is falling behind, not jitter)."""
        if self.errors or self.dropped:
            return False
        return self.offered_rate == 0 or self.achieved_rate >= KEPT_UP_SHARE * self.offered_rate


def require_loopback(url: str) -> str:
    host = urlsplit(url).hostname
    if host != LOOPBACK:
        raise ValueError(f"refusing to send load to {host!r}: only {LOOPBACK} is allowed")
    return url


_WRK_TOTAL = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b")
_WRK_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
_WRK_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_UNIT_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def parse_wrk(text: str) -> WrkResult:
    total = _WRK_TOTAL.search(text)
    rate = _WRK_RATE.search(text)
    if total is None or rate is None:
        raise ValueError(f"unrecognised wrk output:\n{text}")
    socket = _WRK_SOCKET.search(text)
    non2xx = _WRK_NON2XX.search(text)
    return WrkResult(
        requests=int(total.group(1)),
        seconds=float(total.group(2)) * _UNIT_S[total.group(3)],
        requests_per_s=float(rate.group(1)),
        socket_errors=sum(int(g) for g in socket.groups()) if socket else 0,
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
    )


def parse_loadgen(text: str) -> OpenLoopResult:
    data = json.loads(text.strip().splitlines()[-1])
    return OpenLoopResult(
        offered_rate=float(data["offered_rate"]),
        achieved_rate=float(data["achieved_rate"]),
        ok=int(data["ok"]),
        ok_total=int(data["ok_total"]),
        errors=int(data["errors"]),
        dropped=int(data["dropped"]),
        p50_ms=float(data["p50_ms"]),
        p90_ms=float(data["p90_ms"]),
        p99_ms=float(data["p99_ms"]),
        max_ms=float(data["max_ms"]),
        send_lag_p99_ms=float(data["send_lag_p99_ms"]),
        first_error=str(data.get("first_error", "")),
    )


def _run(argv: list[str], core: int, bound_s: float) -> str:
    done = subprocess.run(
        ["taskset", "-c", str(core), *argv],
        capture_output=True,
        text=True,
        timeout=bound_s + RUN_ALLOWANCE_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def run_wrk(url: str, seconds: float, connections: int, core: int) -> WrkResult:
    """Closed-loop maximum throughput: one wrk thread keeping ``connections`` busy."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", require_loopback(url)]
    return parse_wrk(_run(argv, core, seconds))


def run_loadgen(
    binary: Path,
    url: str,
    *,
    rate: float,
    connections: int,
    warmup_s: float,
    seconds: float,
    core: int,
) -> OpenLoopResult:
    """Open loop at ``rate`` req/s, or closed loop with ``rate=0`` (one in flight with 1 conn)."""
    argv = [
        str(binary),
        f"-url={require_loopback(url)}",
        f"-rate={rate}",
        f"-conns={connections}",
        f"-warmup={warmup_s}s",
        f"-duration={seconds}s",
    ]
    return parse_loadgen(_run(argv, core, warmup_s + seconds))
