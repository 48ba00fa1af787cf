"""Per-request Prometheus metrics of one sidecar, on its private ``CollectorRegistry``.

Only figures that change per request or per decision are Counters and Histograms here;
state (breakers, ejections, health, discovery, budgets) is read at scrape time by
``sidecar.telemetry.state_metrics``. Labelled children are looked up once and cached, so
the hot path is a dict lookup and an ``inc``/``observe``.

Invariants: label values are bounded — listener names, cluster names, endpoint ids of
current or past members, fixed outcome/reason vocabularies and code classes; never paths,
request ids or raw status codes.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

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


class Children(dict[tuple[str, ...], Any]):
    """Labelled children of one metric, created on first use."""

    def __init__(self, metric: Counter | Histogram) -> None:
        super().__init__()
        self.metric = metric

    def __missing__(self, key: tuple[str, ...]) -> Any:
        child = self[key] = self.metric.labels(*key)
        return child


class RequestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        def histogram(name: str, doc: str, labels: tuple[str, ...]) -> Histogram:
            return Histogram(name, doc, labels, buckets=LATENCY_BUCKETS, registry=registry)

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
            "Time from sending an attempt to its response headers (or failure).",
            ("cluster",),
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
        self.trace_spans_metric = counter(
            "pilotfish_trace_export_spans",
            "Spans handed to the OTLP exporter, by result.",
            ("result",),
        )
        self.trace_dropped_metric = counter(
            "pilotfish_trace_spans_dropped", "Spans dropped because the export queue was full."
        )
        self.telemetry_errors_metric = counter(
            "pilotfish_telemetry_errors",
            "Internal errors of the telemetry hooks (the request went on regardless).",
        )

        self.downstream_requests = Children(self.downstream_requests_metric)
        self.downstream_duration = Children(self.downstream_duration_metric)
        self.attempts = Children(self.attempts_metric)
        self.attempt_duration = Children(self.attempt_duration_metric)
        self.retries = Children(self.retries_metric)
        self.budget_exhausted = Children(self.budget_exhausted_metric)
        self.timeouts = Children(self.timeouts_metric)
        self.connect_failures = Children(self.connect_failures_metric)
        self.breaker_rejections = Children(self.breaker_rejections_metric)
        self.ring_hash_fallbacks = Children(self.ring_hash_fallbacks_metric)
        self.ejections = Children(self.ejections_metric)
        self.spans_exported = self.trace_spans_metric.labels("exported")
        self.spans_failed = self.trace_spans_metric.labels("failed")


def counter_values(metric: Counter) -> dict[tuple[str, ...], float]:
    """Current totals of a labelled counter, by label values (for the live admin page)."""
    out: dict[tuple[str, ...], float] = {}
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                out[tuple(sample.labels.values())] = sample.value
    return out
