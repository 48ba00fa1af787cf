"""Suite-wide: the loud list of tests a run could not do for want of a program.

Tests skip only when a program they drive (``tests/system_tools.py``) is missing outside
CI. Such skips are listed at the end of the run, grouped by program with the command that
installs it, so they are never mistaken for a full run.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

from tests.system_tools import REASON_PREFIX


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    by_reason: dict[str, list[str]] = defaultdict(list)
    for report in terminalreporter.stats.get("skipped", []):
        if not isinstance(report.longrepr, tuple):
            continue
        reason = str(report.longrepr[2]).removeprefix("Skipped: ")
        if reason.startswith(REASON_PREFIX):
            by_reason[reason].append(report.nodeid)
    if not by_reason:
        return
    total = sum(len(ids) for ids in by_reason.values())
    terminalreporter.section(
        f"NOT RUN: {total} {'test needs' if total == 1 else 'tests need'} programs this "
        "machine lacks",
        sep="!",
        red=True,
        bold=True,
    )
    for reason, ids in sorted(by_reason.items()):
        terminalreporter.write_line(reason, red=True, bold=True)
        for nodeid in ids:
            terminalreporter.write_line(f"    {nodeid}")
    terminalreporter.write_line(
        "This was not a full run. Under CI=true these tests fail instead of being skipped.",
        bold=True,
    )
