"""Start the benchmark's servers pinned to a core, and make sure none outlives the run.

Invariants: every process is started through ``taskset -c CORE`` in a session of its own, so
its whole group can be signalled; every process started is remembered until it is stopped;
``stop_all`` sends SIGTERM to each group, then SIGKILL to whatever is still there after a
grace period, and is safe to call more than once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

GRACE_S = 3.0


class ProcessRegistry:
    """The servers one benchmark run has started; output goes to a log file per process."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._live: dict[int, subprocess.Popen[bytes]] = {}

    def spawn(
        self, name: str, argv: list[str], core: int, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self._log_dir / f"{name}.log").open("ab")
        try:
            proc = subprocess.Popen(
                ["taskset", "-c", str(core), *argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        finally:
            log.close()
        self._live[proc.pid] = proc
        return proc

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self._log_dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        self._signal_group(proc, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=GRACE_S)
        # The leader may be gone while workers linger, so the group gets SIGKILL regardless.
        self._signal_group(proc, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=GRACE_S)
        self._live.pop(proc.pid, None)

    def stop_all(self) -> None:
        for proc in list(self._live.values()):
            self.stop(proc)

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.005) -> bool:
    """Poll ``predicate()`` until it is true or the timeout passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return False
