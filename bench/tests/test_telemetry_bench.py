"""The telemetry benchmark runs its hooks on a started sidecar and prints one row per case."""

from __future__ import annotations

import pytest

from bench import telemetry


async def test_it_prints_a_figure_per_case(capsys: pytest.CaptureFixture[str]) -> None:
    await telemetry.main(200, 1)
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [row.rsplit(" ", 1)[0].strip() for row in rows] == [
        "metrics only",
        "metrics + tracing, unsampled root",
        "metrics + tracing, unsampled, caller's traceparent",
    ]
    for row in rows:
        float(row.rsplit(" ", 1)[1])  # a number of microseconds, whatever the machine
