"""Measure one target for one round: start it, time its readiness, load it, read its costs.

Invariants: the proxy runs on PROXY_CORE, load generators on LOAD_CORE; a target is always
stopped before ``measure_round`` returns, whatever happened; CPU time is the proxy tree's
utime + stime across exactly the load run it is charged to; peak RSS is read after every load
of the round. Figures come back as a flat mapping of metric name to value (see ``metric``).
"""

from __future__ import annotations

import http.client
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.load import OpenLoopResult, run_loadgen, run_wrk
from bench.processes import ProcessRegistry, wait_until
from bench.procstat import core_times, tree_cpu_seconds, tree_peak_rss_mib
from bench.targets import Target

PROXY_CORE = 0
LOAD_CORE = 1
READY_TIMEOUT_S = 30.0
THROUGHPUT_CONNECTIONS = 64
OPEN_LOOP_CONNECTIONS = 64
CPU_RATE = 1000  # the open-loop rate whose CPU cost is reported besides the saturated one


@dataclass(frozen=True)
class Plan:
    """How long each load runs; ``quick`` is one short round for checking the harness."""

    rounds: int
    warmup_s: float
    single_s: float
    open_warmup_s: float
    open_s: float
    throughput_s: float
    rates: tuple[int, ...] = (500, 1000, 2000)
    short: bool = False

    @classmethod
    def full(cls, rounds: int = 3) -> Plan:
        return cls(rounds=rounds, warmup_s=1, single_s=4, open_warmup_s=1, open_s=5, throughput_s=5)

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            rounds=1,
            warmup_s=1,
            single_s=2,
            open_warmup_s=0.5,
            open_s=2,
            throughput_s=2,
            short=True,
        )


def metric(kind: str, rate: int | None = None) -> str:
    """Metric names: ``p99@1000`` for a percentile at a rate, plain names otherwise."""
    return kind if rate is None else f"{kind}@{rate}"


class TargetFailed(RuntimeError):
    """The target could not be started or answered wrongly; the round records no figures."""


def http_status(url_host: str, path: str) -> int | None:
    """Status of one GET to ``host:port`` + ``path``, or None when nothing answered."""
    host, port = url_host.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=0.5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        conn.close()


def _is_ready(target: Target) -> bool:
    if target.ready_url is not None:
        admin = target.ready_url.removeprefix("http://")
        host, _, path = admin.partition("/")
        return http_status(host, "/" + path) == 200
    return http_status(target.listen, "/small") == 200


def _start(target: Target, registry: ProcessRegistry) -> tuple[subprocess.Popen[bytes], float]:
    assert target.argv is not None
    started = time.monotonic()
    proc = registry.spawn(target.key, list(target.argv), PROXY_CORE, dict(target.env))
    settled = wait_until(lambda: proc.poll() is not None or _is_ready(target), READY_TIMEOUT_S)
    if proc.poll() is not None or not settled:
        tail = registry.log_tail(target.key)
        registry.stop(proc)
        raise TargetFailed(f"{target.key} did not become ready:\n{tail}")
    elapsed = time.monotonic() - started
    if target.ready_url is not None and http_status(target.listen, "/small") != 200:
        registry.stop(proc)
        raise TargetFailed(f"{target.key} is ready but does not proxy /small")
    return proc, elapsed


def _open_loop_figures(rate: int, result: OpenLoopResult) -> dict[str, float]:
    return {
        metric("p50", rate): result.p50_ms,
        metric("p90", rate): result.p90_ms,
        metric("p99", rate): result.p99_ms,
        metric("achieved", rate): result.achieved_rate,
        metric("lag_p99", rate): result.send_lag_p99_ms,
        metric("overloaded", rate): 0.0 if result.kept_up else 1.0,
    }


def measure_round(
    target: Target, plan: Plan, registry: ProcessRegistry, loadgen: Path
) -> dict[str, float]:
    proc: subprocess.Popen[bytes] | None = None
    figures: dict[str, float] = {}
    try:
        if target.argv is not None:
            proc, ready_s = _start(target, registry)
            figures["startup_ms"] = ready_s * 1000

        def cpu() -> float:
            return tree_cpu_seconds(proc.pid) if proc is not None else 0.0

        run_wrk(target.url("/small"), plan.warmup_s, THROUGHPUT_CONNECTIONS, LOAD_CORE)

        single = run_loadgen(
            loadgen,
            target.url("/small"),
            rate=0,
            connections=1,
            warmup_s=plan.open_warmup_s,
            seconds=plan.single_s,
            core=LOAD_CORE,
        )
        if single.errors:
            raise TargetFailed(f"{target.key}: one-in-flight errors: {single.first_error}")
        figures |= {
            "single_p50": single.p50_ms,
            "single_p90": single.p90_ms,
            "single_p99": single.p99_ms,
            "single_rps": single.achieved_rate,
        }

        for rate in plan.rates:
            before = cpu()
            result = run_loadgen(
                loadgen,
                target.url("/small"),
                rate=rate,
                connections=OPEN_LOOP_CONNECTIONS,
                warmup_s=plan.open_warmup_s,
                seconds=plan.open_s,
                core=LOAD_CORE,
            )
            figures |= _open_loop_figures(rate, result)
            if proc is not None and rate == CPU_RATE and result.ok_total:
                # The CPU delta spans the warm-up too, so it is charged to every request served.
                figures["cpu_10k_at_rate"] = (cpu() - before) / result.ok_total * 10_000

        for body, path in (("small", "/small"), ("large", "/large")):
            before = cpu()
            core_before = core_times(PROXY_CORE)
            wrk = run_wrk(target.url(path), plan.throughput_s, THROUGHPUT_CONNECTIONS, LOAD_CORE)
            core_after = core_times(PROXY_CORE)
            if wrk.non_2xx or wrk.requests == 0:
                raise TargetFailed(f"{target.key}: wrk {path}: {wrk}")
            figures[f"rps_{body}"] = wrk.requests_per_s
            if body == "small" and core_after[1] > core_before[1]:
                busy = core_after[0] - core_before[0]
                figures["core_busy_max"] = busy / (core_after[1] - core_before[1]) * 100
            if proc is not None and body == "small":
                used = cpu() - before
                figures["cpu_10k_max"] = used / wrk.requests * 10_000
                # Near 100 % the proxy was the bottleneck; well below, the load side was.
                figures["cpu_busy_max"] = used / wrk.seconds * 100

        if proc is not None:
            figures["rss_mib"] = tree_peak_rss_mib(proc.pid)
        return figures
    finally:
        if proc is not None:
            registry.stop(proc)
