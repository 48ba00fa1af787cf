"""Read a process tree's CPU time and peak memory from /proc.

Invariants: a tree is the root plus every live descendant found through the parent pid in
/proc/PID/stat; processes that vanish while being read are skipped, never an error. CPU time is
utime + stime in seconds; peak memory is the sum of VmHWM over the tree (shared pages counted
once per process, so an upper bound for multi-process servers). A core's busy share counts
every process on it, ours or not, so it shows how much else ran beside the proxy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class StatFields:
    """The fields of /proc/PID/stat the harness needs."""

    ppid: int
    utime_ticks: int
    stime_ticks: int


def parse_stat(text: str) -> StatFields:
    """Parse /proc/PID/stat; the command name may hold spaces and parentheses, so split after
    the last ')'."""
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state); ppid is field 4, utime 14, stime 15.
    return StatFields(ppid=int(rest[1]), utime_ticks=int(rest[11]), stime_ticks=int(rest[12]))


def parse_vmhwm_kib(text: str) -> int:
    """VmHWM (peak resident set) in KiB from /proc/PID/status; 0 for kernel threads."""
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def parse_core_times(text: str, core: int) -> tuple[int, int]:
    """(busy, total) jiffies of one core from /proc/stat; idle and iowait are not busy."""
    prefix = f"cpu{core} "
    for line in text.splitlines():
        if line.startswith(prefix):
            values = [int(v) for v in line.split()[1:]]
            # guest and guest_nice are already inside user and nice.
            total = sum(values[:8])
            return total - values[3] - values[4], total
    raise ValueError(f"no line for core {core} in /proc/stat")


def core_times(core: int) -> tuple[int, int]:
    """Current (busy, total) jiffies of ``core``, for a busy share over an interval."""
    return parse_core_times((PROC / "stat").read_text(), core)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def tree_pids(root: int) -> list[int]:
    """The root pid and its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        text = _read(entry / "stat")
        if text is None:
            continue
        children.setdefault(parse_stat(text).ppid, []).append(int(entry.name))
    found: list[int] = []
    pending = [root]
    while pending:
        pid = pending.pop()
        if (PROC / str(pid)).exists():
            found.append(pid)
            pending.extend(children.get(pid, ()))
    return found


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds used so far by the live processes of the tree."""
    ticks = 0
    for pid in tree_pids(root):
        text = _read(PROC / str(pid) / "stat")
        if text is not None:
            fields = parse_stat(text)
            ticks += fields.utime_ticks + fields.stime_ticks
    return ticks / CLOCK_TICKS


def tree_peak_rss_mib(root: int) -> float:
    """Sum of VmHWM over the tree, in MiB."""
    kib = 0
    for pid in tree_pids(root):
        text = _read(PROC / str(pid) / "status")
        if text is not None:
            kib += parse_vmhwm_kib(text)
    return kib / 1024
