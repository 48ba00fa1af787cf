"""Process-tree accounting against real processes of this machine."""

from __future__ import annotations

import os
import sys

from bench.processes import ProcessRegistry, wait_until
from bench.procstat import tree_cpu_seconds, tree_peak_rss_mib, tree_pids

BURN_THEN_SLEEP = (
    "import time\nt=time.process_time()\nwhile time.process_time()-t<0.2: pass\ntime.sleep(30)"
)


def test_tree_includes_grandchildren_and_sums_their_costs(tmp_path) -> None:
    # shell -> shell -> python burning CPU: the tree must reach the grandchild and its CPU.
    script = tmp_path / "burn.py"
    script.write_text(BURN_THEN_SLEEP)
    registry = ProcessRegistry(tmp_path)
    inner = f"sh -c '{sys.executable} {script}; true'; true"
    shell = registry.spawn("tree", ["sh", "-c", inner], core=0)
    try:
        assert wait_until(lambda: len(tree_pids(shell.pid)) >= 3, 10)
        assert wait_until(lambda: tree_cpu_seconds(shell.pid) >= 0.15, 10)
        assert tree_peak_rss_mib(shell.pid) > tree_peak_rss_mib(os.getpid()) * 0.1
    finally:
        registry.stop_all()
    assert shell.poll() is not None
    assert tree_pids(shell.pid) == []


def test_stop_all_kills_the_whole_group(tmp_path) -> None:
    registry = ProcessRegistry(tmp_path)
    parent = registry.spawn("group", ["sh", "-c", "sleep 60 & sleep 60 & wait"], core=1)
    assert wait_until(lambda: len(tree_pids(parent.pid)) >= 3, 10)
    children = [p for p in tree_pids(parent.pid) if p != parent.pid]
    registry.stop_all()
    registry.stop_all()  # a second call is harmless
    for pid in children:
        assert not os.path.exists(f"/proc/{pid}") or _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_spawn_pins_to_the_core(tmp_path) -> None:
    registry = ProcessRegistry(tmp_path)
    proc = registry.spawn("pinned", ["sleep", "30"], core=1)
    try:
        # taskset execs the command, so the pid is sleep's once the exec happened.
        assert wait_until(lambda: _comm(proc.pid) == "sleep", 5)
        assert os.sched_getaffinity(proc.pid) == {1}
    finally:
        registry.stop_all()
    assert proc.poll() is not None


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except FileNotFoundError:
        return ""
