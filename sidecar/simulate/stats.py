"""Streaming statistics of one simulated upstream: bounded memory however long the run.

Nothing keeps a record per request. Latencies go into log-bucketed histograms (a bucket
per 1 % step overall, per 5 % step in each timeline bin), counts into counters, and the
timeline into a fixed number of bins chosen from the run's duration. Endpoint states
(under a fault, breaker open, ejected, unhealthy, gone from discovery) are sampled on a
fixed tick. Hash keys cost one small entry per distinct key, bounded by the scenario's key
count.

Memory is O(bins x (endpoints + latency buckets) + keys), independent of the number of
requests. Every value is computed the same way from the same inputs, so equal runs give
equal numbers.
"""

from __future__ import annotations

import math
from collections import Counter

MAX_BINS = 600
_NICE_WIDTHS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200)
_FLOOR = 1e-6  # latencies below a microsecond share the first bucket


def bin_width(duration: float) -> float:
    """Timeline bin width: the smallest round width giving at most ``MAX_BINS`` bins."""
    for width in _NICE_WIDTHS:
        if duration / width <= MAX_BINS:
            return float(width)
    return math.ceil(duration / MAX_BINS)


class LogHistogram:
    """Counts of non-negative values in buckets that grow by ``1 + 2 * precision``.

    A quantile is reported as its bucket's geometric middle, within ``precision`` of the
    true value (clamped to the smallest and largest value seen).
    """

    __slots__ = ("_counts", "_scale", "count", "max", "min", "total")

    def __init__(self, precision: float = 0.01) -> None:
        self._scale = 1.0 / math.log1p(2 * precision)
        self._counts: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = 0.0

    def add(self, value: float) -> None:
        index = int(math.log(value / _FLOOR) * self._scale) + 1 if value > _FLOOR else 0
        counts = self._counts
        counts[index] = counts.get(index, 0) + 1
        self.count += 1
        self.total += value
        if value > self.max:
            self.max = value
        if value < self.min:
            self.min = value

    def quantile(self, q: float) -> float | None:
        if not self.count:
            return None
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index in sorted(self._counts):
            seen += self._counts[index]
            if seen >= rank:
                if index == 0:
                    return self.min
                middle = _FLOOR * math.exp((index - 0.5) / self._scale)
                return min(max(middle, self.min), self.max)
        return self.max

    @property
    def buckets(self) -> int:
        return len(self._counts)


class UpstreamStats:
    """Everything the report says about one upstream, fed as the run goes."""

    def __init__(self, endpoints: list[str], duration: float, keyed: bool) -> None:
        self.duration = duration
        self.bin = bin_width(duration)
        bins = self.bins = max(1, math.ceil(duration / self.bin))
        self.endpoints = list(endpoints)
        self.requests = 0
        self.successes = 0
        self.unfinished = 0
        self.answers: Counter[str] = Counter()
        self.latency = LogHistogram(0.01)
        self.attempts = 0
        self.outcomes: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        self.by_endpoint: dict[str, int] = dict.fromkeys(endpoints, 0)
        self.ejections: list[dict[str, object]] = []
        self.ejection_count = 0
        self.first_ejection: float | None = None
        # Timeline
        self.bin_requests = [0] * bins
        self.bin_successes = [0] * bins
        self.bin_latency = [LogHistogram(0.05) for _ in range(bins)]
        self.bin_attempts = {name: [0] * bins for name in endpoints}
        self.bin_ticks = [0] * bins
        self.bin_states = {state: {name: [0] * bins for name in endpoints} for state in STATES}
        self.bin_panic = [0] * bins
        # Seconds each endpoint spent in each state, and the cluster in panic
        self.state_seconds = {state: dict.fromkeys(endpoints, 0.0) for state in STATES}
        self.panic_seconds = 0.0
        self.panic_entered = 0
        # Hash keys
        self.keyed = keyed
        self.keys: dict[str, bool] = {}  # each key seen: was it ever served away from home?
        self.keys_away_at_end = 0
        self.keyed_attempts = 0
        self.fallback_attempts = 0

    def _bin(self, t: float) -> int:
        return min(self.bins - 1, max(0, int(t / self.bin)))

    def request_done(self, arrived: float, latency: float, status: int, reason: str | None) -> None:
        self.requests += 1
        b = self._bin(arrived)
        self.bin_requests[b] += 1
        self.answers[f"{status} {reason}" if reason else str(status)] += 1
        if status < 500:
            self.successes += 1
            self.bin_successes[b] += 1
        self.latency.add(latency)
        self.bin_latency[b].add(latency)

    def request_unfinished(self, arrived: float) -> None:
        """A request still waiting when the run ended: it counts as failed."""
        self.requests += 1
        self.unfinished += 1
        self.bin_requests[self._bin(arrived)] += 1
        self.answers["unfinished"] += 1

    def attempt(self, now: float, endpoint: str, outcome: str) -> None:
        self.attempts += 1
        self.outcomes[outcome] += 1
        self.by_endpoint[endpoint] = self.by_endpoint.get(endpoint, 0) + 1
        self.bin_attempts[endpoint][self._bin(now)] += 1

    def keyed_attempt(self, key: str, at_home: bool, at_primary: bool) -> None:
        """One attempt of a request with hash key ``key``: on the endpoint the key had when
        the run started (home), and on the endpoint the ring maps it to now (primary)?"""
        self.keyed_attempts += 1
        if not at_primary:
            self.fallback_attempts += 1
        if not at_home:
            self.keys[key] = True
        elif key not in self.keys:
            self.keys[key] = False

    def event(self, name: str) -> None:
        self.events[name] += 1

    def ejection(
        self, now: float, endpoint: str, until: float, times: int, reason: str, failures: int
    ) -> None:
        self.ejection_count += 1
        if self.first_ejection is None:
            self.first_ejection = now
        if len(self.ejections) < 100:
            self.ejections.append(
                {
                    "endpoint": endpoint,
                    "at": now,
                    "until": until,
                    "times": times,
                    "reason": reason,
                    "failures": failures,
                }
            )

    def sample(
        self,
        now: float,
        width: float,
        states: dict[str, tuple[bool, ...]],
        panic: bool,
        panic_count: int,
    ) -> None:
        """The states seen at ``now``, taken to hold for the ``width`` seconds of a tick."""
        b = self._bin(now)
        self.bin_ticks[b] += 1
        for name, flags in states.items():
            for state, on in zip(STATES, flags, strict=True):
                if on:
                    self.state_seconds[state][name] += width
                    self.bin_states[state][name][b] += 1
        if panic:
            self.panic_seconds += width
            self.bin_panic[b] += 1
        self.panic_entered = panic_count

    def key_counts(self) -> tuple[int, int]:
        """Distinct keys seen, and how many of them were served away from home at least once."""
        return len(self.keys), sum(self.keys.values())


# Sampled per endpoint: a fault of the scenario is active on it, its breaker is open (or
# half-open), it is ejected, unhealthy, or not in the cluster's endpoint set.
STATES = ("fault", "breaker_open", "ejected", "unhealthy", "gone")
