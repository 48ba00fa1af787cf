"""Results of a benchmark run and their summary over rounds.

Invariants: a round's figures are a flat mapping of metric name to value; a summary is the
median with the lowest and highest round, over the rounds that produced that metric; a target
that did not run carries the reason and no rounds.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Spread:
    """Median and range of one metric over the rounds."""

    median: float
    low: float
    high: float
    rounds: int


def spread(values: Iterable[float]) -> Spread:
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values to summarise")
    return Spread(statistics.median(ordered), ordered[0], ordered[-1], len(ordered))


@dataclass
class TargetResults:
    """Everything measured for one target across the rounds."""

    key: str
    label: str
    unavailable: str | None = None
    rounds: list[dict[str, float]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Spread]:
        return aggregate(self.rounds)

    @property
    def measured(self) -> bool:
        return bool(self.rounds)


def aggregate(rounds: Iterable[Mapping[str, float]]) -> dict[str, Spread]:
    by_metric: dict[str, list[float]] = {}
    for figures in rounds:
        for name, value in figures.items():
            by_metric.setdefault(name, []).append(value)
    return {name: spread(values) for name, values in by_metric.items()}


def ratio(value: Spread | None, reference: Spread | None) -> float | None:
    """Median over median; None when either side is missing or the reference is zero."""
    if value is None or reference is None or reference.median == 0:
        return None
    return value.median / reference.median
