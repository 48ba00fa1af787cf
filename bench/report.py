"""Turn a benchmark run's results into markdown tables.

Invariants: pure (no I/O); every figure cell is the median over rounds followed by the lowest
and highest round when there was more than one; a missing figure is an em dash; a latency
measured while the target could not keep up with the offered load is marked with a dagger.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from bench.stats import Spread, TargetResults, ratio

DASH = "\u2014"
EN_DASH = "\u2013"
TIMES = "\u00d7"
OVERLOAD_MARK = "†"
REFERENCES = (("nginx", "nginx"), ("aiohttp", "naive aiohttp"))


def significant(value: float, digits: int = 3) -> str:
    """A number to ``digits`` significant figures, with thousands separators for big ones."""
    if value == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:,.{decimals}f}"


def cell(summary: dict[str, Spread], name: str, fmt: Callable[[float], str] = significant) -> str:
    s = summary.get(name)
    if s is None:
        return DASH
    if s.rounds == 1 or s.low == s.high:
        return fmt(s.median)
    return f"{fmt(s.median)} ({fmt(s.low)}{EN_DASH}{fmt(s.high)})"


def _row(values: Sequence[str]) -> str:
    return "| " + " | ".join(values) + " |"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = [_row(header), _row(["---"] + ["---:"] * (len(header) - 1))]
    lines += [_row(r) for r in rows]
    return "\n".join(lines)


def _not_measured(result: TargetResults, width: int) -> list[str] | None:
    if result.measured:
        return None
    reason = result.unavailable or (result.failures[-1].splitlines()[0] if result.failures else "")
    return [f"{result.label} (not run: {reason})"] + [DASH] * (width - 1)


def throughput_table(results: Sequence[TargetResults]) -> str:
    header = [
        "target",
        "req/s, 100 B",
        "req/s, 16 KiB",
        "CPU s per 10k req, max load",
        "proxy's CPU at max load, %",
        "core 0 busy (all processes), %",
        "CPU s per 10k req, 1000 req/s",
        "peak RSS MiB",
        "ready in ms",
    ]
    names = (
        "rps_small",
        "rps_large",
        "cpu_10k_max",
        "cpu_busy_max",
        "core_busy_max",
        "cpu_10k_at_rate",
        "rss_mib",
        "startup_ms",
    )
    return _table(header, _summary_rows(results, len(header), names))


def single_table(results: Sequence[TargetResults]) -> str:
    header = ["target", "p50 ms", "p90 ms", "p99 ms", "req/s"]
    names = ("single_p50", "single_p90", "single_p99", "single_rps")
    return _table(header, _summary_rows(results, len(header), names))


def _summary_rows(
    results: Sequence[TargetResults], width: int, names: Sequence[str]
) -> list[list[str]]:
    """One row per target: its label, then the named summary cells (or "not measured")."""
    rows = []
    for r in results:
        missing = _not_measured(r, width)
        if missing:
            rows.append(missing)
            continue
        s = r.summary()
        rows.append([r.label, *(cell(s, n) for n in names)])
    return rows


def open_loop_table(results: Sequence[TargetResults], rates: Sequence[int]) -> str:
    header = [
        "target",
        "offered req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "served req/s",
        "wait before send p99 ms",
    ]
    rows = []
    for r in results:
        missing = _not_measured(r, len(header))
        if missing:
            rows.append(missing)
            continue
        s = r.summary()
        for rate in rates:
            overloaded = s.get(f"overloaded@{rate}")
            mark = OVERLOAD_MARK if overloaded is not None and overloaded.high > 0 else ""
            latencies = [cell(s, f"{p}@{rate}") + mark for p in ("p50", "p90", "p99")]
            served = cell(s, f"achieved@{rate}")
            rows.append([r.label, f"{rate:,}", *latencies, served, cell(s, f"lag_p99@{rate}")])
    return _table(header, rows)


RATIO_METRICS = (
    ("rps_small", "req/s, 100 B"),
    ("rps_large", "req/s, 16 KiB"),
    ("p99@1000", "p99 at 1000 req/s"),
    ("single_p50", "p50, one in flight"),
    ("cpu_10k_max", "CPU per request, max load"),
    ("rss_mib", "peak RSS"),
)


def ratio_table(results: Sequence[TargetResults], reference_key: str) -> str | None:
    by_key = {r.key: r for r in results}
    reference = by_key.get(reference_key)
    if reference is None or not reference.measured:
        return None
    ref = reference.summary()
    header = ["target", *(label for _, label in RATIO_METRICS)]
    rows = []
    for r in results:
        if not r.measured or r.key in ("direct", reference_key):
            continue
        s = r.summary()
        values = [ratio(s.get(name), ref.get(name)) for name, _ in RATIO_METRICS]
        rows.append([r.label, *(DASH if v is None else f"{v:.2f}{TIMES}" for v in values)])
    return _table(header, rows) if rows else None


def markdown(results: Sequence[TargetResults], rates: Sequence[int], rounds: int) -> str:
    """All tables of one run, as the body of a markdown document."""
    spread_note = (
        f"Each cell is the median of {rounds} rounds with the lowest and highest round in "
        "parentheses."
        if rounds > 1
        else "One round: single values, no spread."
    )
    parts = [
        spread_note,
        "### Throughput and cost\n\n" + throughput_table(results),
        "### Latency with one request in flight (closed loop, 1 connection)\n\n"
        + single_table(results),
        "### Latency at a fixed offered load (open loop, 100 B body)\n\n"
        + open_loop_table(results, rates)
        + f"\n\n{OVERLOAD_MARK} the target did not keep up in at least one round (errors, or "
        "less than 98 % of the offered rate served): its latency includes the queue.",
    ]
    for key, label in REFERENCES:
        table = ratio_table(results, key)
        if table is not None:
            parts.append(
                f"### Ratios to {label} (median over median; above 1 means more)\n\n" + table
            )
    failures = [f"- {r.label}: {f.splitlines()[0]}" for r in results for f in r.failures]
    if failures:
        parts.append("### Failed rounds\n\n" + "\n".join(failures))
    return "\n\n".join(parts) + "\n"
