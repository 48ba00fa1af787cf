"""Per-request Prometheus metrics of one sidecar, on its private ``CollectorRegistry``.

Only figures that change per request or per decision live here; state (breakers, ejections,
health, discovery, budgets) is read at scrape time by ``sidecar.telemetry.state_metrics``.

The request path runs on one asyncio loop thread, so the counters and histograms here are
plain accumulators with no locks: a counter child adds to a float, a histogram child bumps
one bucket found by ``bisect`` and adds to its sum. Everything else — cumulative buckets,
``_count``, the Prometheus families — is built by ``RequestCollector`` when ``/metrics`` is
scraped. Labelled children are created on first use and cached, so the hot path is a dict
lookup and an ``inc``/``observe``. The span-export counters are the one exception: the OTLP
exporter reports them from its own thread, so they take a lock (once per export batch).

Invariants: label values are bounded — listener names, cluster names, endpoint ids of
current or past members, fixed outcome/reason vocabularies and code classes; never paths,
request ids or raw status codes. The exposition (names, HELP, TYPE, labels, ``_total``,
cumulative ``_bucket`` with ``+Inf``, ``_count``, ``_sum``) is that of prometheus_client's
own Counter and Histogram, minus their ``_created`` samples.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterator
from itertools import accumulate
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
CODE_CLASSES = ("none", "1xx", "2xx", "3xx", "4xx", "5xx")


def code_class(status: int) -> str:
    """``2xx`` … ``5xx``; ``none`` when no response was sent (the client went away)."""
    index = status // 100
    return CODE_CLASSES[index] if 0 < index < len(CODE_CLASSES) else "none"


class CounterChild:
    """One labelled series of a counter."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class SharedCounterChild(CounterChild):
    """A counter series incremented from another thread than the loop's."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0) -> None:
        with self._lock:
            self.value += amount


class HistogramChild:
    """One labelled series of a histogram: per-bucket (not cumulative) counts and a sum.

    ``counts[i]`` holds the observations ``<= bounds[i]`` and ``> bounds[i - 1]``; the last
    slot holds those above every bound (the ``+Inf`` bucket's share).
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bound's bucket (le is <=).
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)


C = TypeVar("C")


class Children(dict[tuple[str, ...], C], Generic[C]):
    """Labelled children of one metric, keyed by label values, created on first use."""

    def __init__(self, make: Callable[[], C], arity: int) -> None:
        super().__init__()
        self._make = make
        self._arity = arity

    def __missing__(self, key: tuple[str, ...]) -> C:
        if len(key) != self._arity:
            raise ValueError(f"expected {self._arity} label values, got {key!r}")
        child = self[key] = self._make()
        return child


class CounterFamily:
    """A counter's name, help and label names, and its children."""

    def __init__(
        self,
        name: str,
        doc: str,
        labels: tuple[str, ...] = (),
        make: Callable[[], CounterChild] = CounterChild,
    ) -> None:
        self.name = name
        self.doc = doc
        self.labels = labels
        self.children: Children[CounterChild] = Children(make, len(labels))
        if not labels:
            self.children[()]  # an unlabelled counter is exported (as 0) from the start

    def inc(self, amount: float = 1.0) -> None:
        """Count on an unlabelled counter (a labelled one refuses: no label values)."""
        self.children[()].inc(amount)

    def describe(self) -> Metric:
        return CounterMetricFamily(self.name, self.doc, labels=self.labels)

    def export(self) -> Metric:
        family = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for key, child in list(self.children.items()):
            family.add_metric(key, child.value)
        return family


class HistogramFamily:
    """A histogram's name, help, label names and bucket bounds, and its children."""

    def __init__(
        self, name: str, doc: str, labels: tuple[str, ...], bounds: tuple[float, ...]
    ) -> None:
        self.name = name
        self.doc = doc
        self.labels = labels
        self.bounds = bounds
        self._le = [floatToGoString(b) for b in bounds] + ["+Inf"]
        self.children: Children[HistogramChild] = Children(
            lambda: HistogramChild(bounds), len(labels)
        )

    def describe(self) -> Metric:
        return HistogramMetricFamily(self.name, self.doc, labels=self.labels)

    def export(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        for key, child in list(self.children.items()):
            cumulative = accumulate(child.counts)
            buckets = [(le, float(n)) for le, n in zip(self._le, cumulative, strict=True)]
            family.add_metric(key, buckets, child.sum)
        return family


class RequestCollector(Collector):
    """Exports the families' accumulated values when the registry is scraped."""

    def __init__(self, families: list[CounterFamily | HistogramFamily]) -> None:
        self._families = families

    def describe(self) -> Iterator[Metric]:
        # Lets the registry refuse a clashing name even with auto_describe off.
        for family in self._families:
            yield family.describe()

    def collect(self) -> Iterator[Metric]:
        for family in self._families:
            yield family.export()


class RequestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        families: list[CounterFamily | HistogramFamily] = []

        def counter(
            name: str,
            doc: str,
            labels: tuple[str, ...] = (),
            make: Callable[[], CounterChild] = CounterChild,
        ) -> CounterFamily:
            family = CounterFamily(name, doc, labels, make)
            families.append(family)
            return family

        def histogram(name: str, doc: str, labels: tuple[str, ...]) -> HistogramFamily:
            family = HistogramFamily(name, doc, labels, LATENCY_BUCKETS)
            families.append(family)
            return family

        self.downstream_requests_metric = counter(
            "pilotfish_downstream_requests",
            "Requests answered on a listener, by status class.",
            ("listener", "code_class"),
        )
        self.downstream_duration_metric = histogram(
            "pilotfish_downstream_request_duration_seconds",
            "Time from accepting a request to the end of its response.",
            ("listener",),
        )
        self.attempts_metric = counter(
            "pilotfish_upstream_attempts",
            "Physical attempts sent upstream, by endpoint and outcome.",
            ("cluster", "endpoint", "outcome"),
        )
        self.attempt_duration_metric = histogram(
            "pilotfish_upstream_attempt_duration_seconds",
            "Time from sending an attempt to the end of its response body (or its failure).",
            ("cluster", "endpoint"),
        )
        self.retries_metric = counter(
            "pilotfish_upstream_retries",
            "Retries granted by the retry policy and budget.",
            ("cluster",),
        )
        self.budget_exhausted_metric = counter(
            "pilotfish_upstream_retry_budget_exhausted",
            "Retries the policy wanted but the retry budget refused.",
            ("cluster",),
        )
        self.timeouts_metric = counter(
            "pilotfish_upstream_timeouts",
            "Attempts that ran out of time (per-try timeout or total deadline).",
            ("cluster", "endpoint"),
        )
        self.connect_failures_metric = counter(
            "pilotfish_upstream_connect_failures",
            "Attempts that could not connect.",
            ("cluster", "endpoint"),
        )
        self.breaker_rejections_metric = counter(
            "pilotfish_upstream_breaker_rejections",
            "Attempts an endpoint's circuit breaker refused.",
            ("cluster", "endpoint"),
        )
        self.ring_hash_fallbacks_metric = counter(
            "pilotfish_upstream_ring_hash_fallbacks",
            "Attempts sent to another endpoint than the hash key's primary.",
            ("cluster",),
        )
        self.ejections_metric = counter(
            "pilotfish_outlier_ejections",
            "Endpoints ejected by outlier detection.",
            ("cluster", "endpoint", "reason"),
        )
        self.refused_metric = counter(
            "pilotfish_downstream_refused",
            "Requests a listener refused before serving them (framing, limits, head rules, "
            "head timeout), by status.",
            ("listener", "code"),
        )
        self.connection_overflow_metric = counter(
            "pilotfish_downstream_connection_overflows",
            "Connections closed on accept because the listener had max_connections open.",
            ("listener",),
        )
        self.tunnel_bytes_metric = counter(
            "pilotfish_tunnel_bytes",
            "Bytes relayed through upgraded (WebSocket) connections, in from the client or "
            "out to it, counted when the tunnel ends.",
            ("listener", "direction"),
        )
        self.trace_spans_metric = counter(
            "pilotfish_trace_export_spans",
            "Spans handed to the OTLP exporter, by result.",
            ("result",),
            SharedCounterChild,
        )
        self.trace_dropped_metric = counter(
            "pilotfish_trace_spans_dropped", "Spans dropped because the export queue was full."
        )
        self.telemetry_errors_metric = counter(
            "pilotfish_telemetry_errors",
            "Internal errors of the telemetry hooks (the request went on regardless).",
        )

        self.downstream_requests = self.downstream_requests_metric.children
        self.downstream_duration = self.downstream_duration_metric.children
        self.attempts = self.attempts_metric.children
        self.attempt_duration = self.attempt_duration_metric.children
        self.retries = self.retries_metric.children
        self.budget_exhausted = self.budget_exhausted_metric.children
        self.timeouts = self.timeouts_metric.children
        self.connect_failures = self.connect_failures_metric.children
        self.breaker_rejections = self.breaker_rejections_metric.children
        self.ring_hash_fallbacks = self.ring_hash_fallbacks_metric.children
        self.ejections = self.ejections_metric.children
        self.refused = self.refused_metric.children
        self.connection_overflows = self.connection_overflow_metric.children
        self.tunnel_bytes = self.tunnel_bytes_metric.children
        self.spans_exported = self.trace_spans_metric.children[("exported",)]
        self.spans_failed = self.trace_spans_metric.children[("failed",)]

        self.collector = RequestCollector(families)
        registry.register(self.collector)


def counter_values(metric: CounterFamily) -> dict[tuple[str, ...], float]:
    """Current totals of a labelled counter, by label values (for the live admin page)."""
    return {key: child.value for key, child in list(metric.children.items())}
