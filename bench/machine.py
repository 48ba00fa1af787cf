"""Describe the machine and software a benchmark ran on, for the results' header.

Invariants: read-only; every probe that fails yields "unknown" instead of an error.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from bench.toolchain import tool_versions


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _memory_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    return "unknown"


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_commit(repo: Path) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return "unknown"
    return done.stdout.strip() or "unknown"


def describe(repo: Path) -> dict[str, str]:
    facts = {
        "CPU": f"{_cpu_model()}, {os.cpu_count()} cores",
        "memory": _memory_gib(),
        "kernel": platform.release(),
        "Python": platform.python_version(),
        "aiohttp": _package_version("aiohttp"),
        "Pilotfish commit": _git_commit(repo),
    }
    facts |= tool_versions()
    return facts
