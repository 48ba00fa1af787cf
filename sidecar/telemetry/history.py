"""The last minutes of every cluster and endpoint, sampled, for the live admin page's charts.

Every ``INTERVAL`` seconds a background task reads what the sidecar counts already — the
per-request attempt counters and latency histograms of ``RequestMetrics`` — and the
clusters' state, and keeps one point per cluster and per endpoint for the interval that
ended: attempts per second (requests its endpoints received, retries included), the share
of them that failed (as ``/stats`` counts failures), the p99 latency (the histogram's
quantile, interpolated as Prometheus' ``histogram_quantile`` does), and for an endpoint its
state word (``sidecar.endpoint_state``), for a cluster how many endpoints were available.
The last ``POINTS`` samples are kept: ten minutes at five seconds. ``as_json`` is what
``GET /history`` serves, with the events of the same window.

Nothing here runs per request: the request path keeps counting as it did, and a sample
costs one pass over the counters and the members every few seconds.

Invariants: memory is bounded — ``POINTS`` samples, each holding the current members of
the current clusters only (at most ``MAX_ENDPOINTS`` per cluster), so an endpoint gone for
ten minutes is forgotten; counts read in one sample are differences from the previous read,
never negative; an interval without attempts has no error ratio and no p99 (``null``).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from resilience.clock import MONOTONIC, Clock
from sidecar.endpoint_state import STATES, endpoint_state
from sidecar.telemetry.metrics import RequestMetrics

if TYPE_CHECKING:
    from sidecar.cluster import Cluster
    from sidecar.events import EventBus

INTERVAL = 5.0  # seconds between samples
POINTS = 120  # samples kept: ten minutes
MAX_ENDPOINTS = 256  # endpoints of one cluster charted; the cluster's own series has all
# Outcomes that say nothing against the endpoint (the client left, or the sidecar refused).
NOT_FAILURES = frozenset(("success", "cancelled", "local_rejection"))
_STATE_INDEX = {word: i for i, word in enumerate(STATES)}


def quantile(q: float, bounds: Sequence[float], counts: Sequence[int]) -> float | None:
    """The ``q`` quantile of observations counted per bucket (``counts[i]`` those
    ``<= bounds[i]`` and above the bound before; one more slot for above every bound),
    linearly interpolated within its bucket as Prometheus does; the highest bound when it
    falls above them; None without observations."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    below = 0
    for i, count in enumerate(counts):
        if below + count >= rank and count > 0:
            if i == len(bounds):  # above every bound: the largest known bound
                return bounds[-1]
            lower = bounds[i - 1] if i > 0 else 0.0
            return lower + (bounds[i] - lower) * (rank - below) / count
        below += count
    return bounds[-1]


class _Totals:
    """What the counters said for one (cluster, endpoint) at one read."""

    __slots__ = ("attempts", "buckets", "failures")

    def __init__(self) -> None:
        self.attempts = 0.0
        self.failures = 0.0
        self.buckets: list[int] = []

    def since(self, before: _Totals | None) -> _Totals:
        if before is None:
            return self
        out = _Totals()
        out.attempts = max(0.0, self.attempts - before.attempts)
        out.failures = max(0.0, self.failures - before.failures)
        old = before.buckets
        out.buckets = [
            max(0, n - (old[i] if i < len(old) else 0)) for i, n in enumerate(self.buckets)
        ]
        return out

    def add(self, other: _Totals) -> None:
        self.attempts += other.attempts
        self.failures += other.failures
        if len(self.buckets) < len(other.buckets):
            self.buckets.extend([0] * (len(other.buckets) - len(self.buckets)))
        for i, n in enumerate(other.buckets):
            self.buckets[i] += n


# One point: attempts/s, error ratio, p99 in ms, and the state index (endpoint) or the
# available count (cluster). A tuple: a sample holds one per member, for ten minutes.
Point = tuple[float, float | None, float | None, int]


class Sample:
    __slots__ = ("at", "clusters", "endpoints")

    def __init__(self, at: float) -> None:
        self.at = at  # wall time, Unix seconds
        self.clusters: dict[str, Point] = {}
        self.endpoints: dict[str, dict[str, tuple[str, Point]]] = {}  # cluster -> id -> name, p


class History:
    def __init__(
        self,
        metrics: RequestMetrics,
        clusters: Callable[[], Mapping[str, Cluster]],
        events: EventBus,
        *,
        interval: float = INTERVAL,
        points: int = POINTS,
        clock: Clock = MONOTONIC,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._metrics = metrics
        self._clusters = clusters
        self._events = events
        self.interval = interval
        self.samples: deque[Sample] = deque(maxlen=points)
        self._clock = clock
        self._wall = wall
        self._bounds = metrics.attempt_duration_metric.bounds
        self._last: dict[tuple[str, str], _Totals] | None = None
        self._last_read = 0.0

    async def run(self) -> None:
        """Sample every ``interval`` seconds until cancelled."""
        if self._last is None:
            self.prime()
        while True:
            await asyncio.sleep(self.interval)
            self.sample()

    def prime(self) -> None:
        """Read the counters as they are: the first sample counts from here."""
        self._last = self._read()
        self._last_read = self._clock.now()

    def sample(self) -> Sample:
        """One point per cluster and member for the time since the last read."""
        now = self._clock.now()
        totals = self._read()
        last = self._last
        if last is None:  # never primed: count from zero, over one interval
            last, elapsed = {}, self.interval
        else:
            elapsed = max(now - self._last_read, 1e-9)
        self._last, self._last_read = totals, now
        delta = {key: t.since(last.get(key)) for key, t in totals.items()}
        out = Sample(self._wall())
        by_cluster: dict[str, _Totals] = {}
        for (cluster, _), d in delta.items():
            by_cluster.setdefault(cluster, _Totals()).add(d)
        for name, cluster in self._clusters().items():
            members = cluster.member_ids
            available = sum(1 for i in members if cluster.available(i))
            out.clusters[name] = self._point(by_cluster.get(name), elapsed, available)
            points: dict[str, tuple[str, Point]] = {}
            for endpoint_id in members[:MAX_ENDPOINTS]:
                state = _STATE_INDEX[endpoint_state(cluster, endpoint_id)]
                d = delta.get((name, endpoint_id))
                ep_name = cluster.states[endpoint_id].endpoint.name
                points[endpoint_id] = (ep_name, self._point(d, elapsed, state))
            out.endpoints[name] = points
        self.samples.append(out)
        return out

    def _point(self, d: _Totals | None, elapsed: float, extra: int) -> Point:
        if d is None or d.attempts <= 0:
            return (0.0, None, None, extra)
        p99 = quantile(0.99, self._bounds, d.buckets)
        return (
            d.attempts / elapsed,
            d.failures / d.attempts,
            None if p99 is None else p99 * 1000.0,
            extra,
        )

    def _read(self) -> dict[tuple[str, str], _Totals]:
        m = self._metrics
        totals: dict[tuple[str, str], _Totals] = {}
        for (cluster, endpoint, outcome), child in list(m.attempts_metric.children.items()):
            t = totals.get((cluster, endpoint))
            if t is None:
                t = totals[(cluster, endpoint)] = _Totals()
            t.attempts += child.value
            if outcome not in NOT_FAILURES:
                t.failures += child.value
        for key, hist in list(m.attempt_duration_metric.children.items()):
            t = totals.get(key)  # type: ignore[arg-type]
            if t is None:
                t = totals[key] = _Totals()  # type: ignore[index]
            t.buckets = list(hist.counts)
        return totals

    # -- what /history serves ------------------------------------------------------------

    def as_json(self) -> dict[str, Any]:
        samples = list(self.samples)
        window = self.interval * (self.samples.maxlen or len(samples))
        since = samples[0].at - self.interval if samples else self._wall() - window
        return {
            "interval": self.interval,
            "window": window,
            "t": [s.at for s in samples],
            "clusters": list(_clusters_json(samples)),
            "events": [e.as_dict() for e in self._events.history if e.at >= since],
        }


def _clusters_json(samples: list[Sample]) -> Iterator[dict[str, Any]]:
    """Columns per cluster and endpoint of the latest sample (``null`` where a series did
    not exist yet)."""
    if not samples:
        return
    latest = samples[-1]
    for name in latest.clusters:
        points = [s.clusters.get(name) for s in samples]
        out: dict[str, Any] = {"name": name, **_columns(points), "available": _column(points, 3)}
        endpoints = []
        for endpoint_id, (ep_name, _) in latest.endpoints.get(name, {}).items():
            series = [s.endpoints.get(name, {}).get(endpoint_id) for s in samples]
            eps = [p[1] if p is not None else None for p in series]
            states = [STATES[p[3]] if p is not None else None for p in eps]
            endpoints.append({"id": endpoint_id, "name": ep_name, **_columns(eps), "state": states})
        out["endpoints"] = endpoints
        yield out


def _columns(points: list[Point | None]) -> dict[str, list[Any]]:
    return {
        "rps": [None if p is None else round(p[0], 3) for p in points],
        "error_rate": [None if p is None or p[1] is None else round(p[1], 4) for p in points],
        "p99_ms": [None if p is None or p[2] is None else round(p[2], 3) for p in points],
    }


def _column(points: list[Point | None], index: int) -> list[Any]:
    return [None if p is None else p[index] for p in points]
