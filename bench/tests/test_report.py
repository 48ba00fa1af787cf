"""Summaries over rounds and the markdown tables built from them."""

from __future__ import annotations

import pytest

from bench.report import (
    DASH,
    OVERLOAD_MARK,
    cell,
    markdown,
    open_loop_table,
    ratio_table,
    significant,
    throughput_table,
)
from bench.stats import Spread, TargetResults, aggregate, ratio, spread


def test_spread_is_median_and_range() -> None:
    assert spread([3.0, 1.0, 2.0]) == Spread(median=2.0, low=1.0, high=3.0, rounds=3)
    assert spread([4.0, 1.0]) == Spread(median=2.5, low=1.0, high=4.0, rounds=2)


def test_spread_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        spread([])


def test_aggregate_uses_only_rounds_that_have_the_metric() -> None:
    summary = aggregate([{"a": 1.0, "b": 10.0}, {"a": 3.0}, {"a": 2.0}])
    assert summary["a"] == Spread(2.0, 1.0, 3.0, 3)
    assert summary["b"] == Spread(10.0, 10.0, 10.0, 1)


@pytest.mark.parametrize(
    ("value", "reference", "expected"),
    [
        (Spread(50, 40, 60, 3), Spread(100, 90, 110, 3), 0.5),
        (None, Spread(1, 1, 1, 1), None),
        (Spread(1, 1, 1, 1), Spread(0, 0, 0, 1), None),
    ],
)
def test_ratio(value: Spread | None, reference: Spread | None, expected: float | None) -> None:
    assert ratio(value, reference) == expected


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0"), (0.0634, "0.0634"), (1.234, "1.23"), (12.34, "12.3"), (24459.4, "24,459")],
)
def test_significant(value: float, text: str) -> None:
    assert significant(value) == text


def test_cell_shows_range_only_when_rounds_differ() -> None:
    assert cell({"x": Spread(2.0, 1.0, 3.0, 3)}, "x") == "2.00 (1.00\u20133.00)"
    assert cell({"x": Spread(2.0, 2.0, 2.0, 1)}, "x") == "2.00"
    assert cell({}, "x") == DASH


def _results() -> list[TargetResults]:
    def rounds(rps: float, p99: float, overloaded: float = 0.0) -> list[dict[str, float]]:
        base = {
            "rps_small": rps,
            "rps_large": rps / 2,
            "cpu_10k_max": 10_000 / rps,
            "cpu_busy_max": 100.0,
            "rss_mib": 10.0,
            "startup_ms": 20.0,
            "single_p50": 0.1,
            "p50@1000": p99 / 4,
            "p90@1000": p99 / 2,
            "p99@1000": p99,
            "achieved@1000": 1000.0,
            "lag_p99@1000": 0.3,
            "overloaded@1000": overloaded,
        }
        return [base, {**base, "rps_small": rps * 1.1}, {**base, "rps_small": rps * 0.9}]

    return [
        TargetResults("nginx", "nginx", rounds=rounds(20_000, 1.0)),
        TargetResults("aiohttp", "naive aiohttp", rounds=rounds(2_000, 4.0, overloaded=1.0)),
        TargetResults("pilotfish-off", "Pilotfish (all off)", unavailable="not installed"),
    ]


def test_throughput_table_rows_and_not_run_target() -> None:
    table = throughput_table(_results()).splitlines()
    assert len(table) == 2 + 3
    assert table[2].startswith("| nginx | 20,000 (18,000\u201322,000) | 10,000 |")
    assert table[4].startswith("| Pilotfish (all off) (not run: not installed) | \u2014 |")


def test_open_loop_table_marks_overload() -> None:
    table = open_loop_table(_results(), [1000])
    nginx_row, aiohttp_row = table.splitlines()[2:4]
    assert OVERLOAD_MARK not in nginx_row
    assert f"| 4.00{OVERLOAD_MARK} |" in aiohttp_row


def test_ratio_table_divides_medians_and_skips_reference() -> None:
    table = ratio_table(_results(), "nginx")
    assert table is not None
    rows = table.splitlines()[2:]
    assert len(rows) == 1
    assert rows[0].startswith("| naive aiohttp | 0.10\u00d7 | 0.10\u00d7 | 4.00\u00d7 |")


def test_ratio_table_needs_a_measured_reference_and_something_to_compare() -> None:
    results = _results()
    assert ratio_table(results, "haproxy") is None
    assert ratio_table(results, "pilotfish-off") is None
    assert ratio_table(results[:1], "nginx") is None


def test_markdown_lists_failures_and_both_ratio_tables() -> None:
    results = _results()
    results[0].failures.append("round 2: nginx did not become ready:\nlog tail")
    text = markdown(results, [1000], rounds=3)
    assert "Ratios to nginx" in text
    assert "Ratios to naive aiohttp" in text
    assert "- nginx: round 2: nginx did not become ready:" in text
    assert "log tail" not in text
