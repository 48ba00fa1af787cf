"""Scrape-time metrics: cluster, endpoint and discovery state read when ``/metrics`` is asked.

A custom Prometheus collector rather than gauges kept up to date, so the request path pays
nothing for them: breaker states, ejections, health verdicts, panic, retry budgets,
in-flight counts, overflows and discovery counters are read off the live objects.

Invariants: reading is side-effect free apart from what the state objects do when asked
(an outlier record or breaker whose time has passed settles, exactly as for ``/clusters``);
an endpoint appears under its id (``host:port``) and, in the series read here, its name
too (``endpoint_name``; ``pilotfish_endpoint_info`` carries it for joins with the per-request
series); only current members are listed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from discovery.source import Source
    from sidecar.cluster import Cluster
    from sidecar.events import EventBus


class TelemetryView(Protocol):
    """What telemetry watches of the sidecar: live mappings, readiness, state changes."""

    events: EventBus

    @property
    def clusters(self) -> Mapping[str, Cluster]: ...

    @property
    def sources(self) -> Mapping[str, Source]: ...

    @property
    def ready(self) -> bool: ...


class ReloadCollector(Collector):
    """Reloads applied and refused, and how the last one went, named as Prometheus names
    its own (``prometheus_config_last_reload_successful``)."""

    def __init__(self) -> None:
        self.applied = 0
        self.refused = 0
        self.last_successful = True  # the configuration running now loaded fine
        self.last_success_time = 0.0

    def record(self, applied: bool, at: float) -> None:
        self.last_successful = applied
        if applied:
            self.applied += 1
            self.last_success_time = at
        else:
            self.refused += 1

    def describe(self) -> Iterator[Metric]:
        yield from self.collect()

    def collect(self) -> Iterator[Metric]:
        total = CounterMetricFamily(
            "pilotfish_config_reloads", "Reloads of the config file, by result.", labels=["result"]
        )
        total.add_metric(["applied"], self.applied)
        total.add_metric(["refused"], self.refused)
        yield total
        last = GaugeMetricFamily(
            "pilotfish_config_last_reload_successful",
            "1 when the last reload was applied (or none was asked for), 0 when refused.",
        )
        last.add_metric([], 1.0 if self.last_successful else 0.0)
        yield last
        when = GaugeMetricFamily(
            "pilotfish_config_last_reload_success_timestamp_seconds",
            "Unix time of the last reload applied (0: none yet).",
        )
        when.add_metric([], self.last_success_time)
        yield when


BREAKER_STATES = ("closed", "open", "half_open")


class StateCollector(Collector):
    def __init__(
        self,
        clusters: Mapping[str, Cluster],
        sources: Mapping[str, Source],
        listeners_in_flight: Callable[[], Mapping[str, int]],
        ready: Callable[[], bool],
    ) -> None:
        self._clusters = clusters
        self._sources = sources
        self._in_flight = listeners_in_flight
        self._ready = ready

    def collect(self) -> Iterator[Metric]:
        ready = GaugeMetricFamily("pilotfish_ready", "1 when the sidecar reports ready.")
        ready.add_metric([], 1.0 if self._ready() else 0.0)
        yield ready
        downstream = GaugeMetricFamily(
            "pilotfish_downstream_requests_in_flight",
            "Requests being handled on a listener.",
            labels=["listener"],
        )
        for listener, n in sorted(self._in_flight().items()):
            downstream.add_metric([listener], n)
        yield downstream
        yield from self._clusters_metrics()
        yield from self._discovery_metrics()

    def _clusters_metrics(self) -> Iterator[Metric]:
        c = ["cluster"]
        e = ["cluster", "endpoint", "endpoint_name"]
        members = GaugeMetricFamily(
            "pilotfish_cluster_endpoints", "Endpoints in the current discovery snapshot.", labels=c
        )
        available = GaugeMetricFamily(
            "pilotfish_cluster_endpoints_available",
            "Endpoints healthy, not ejected and admitted by their breaker.",
            labels=c,
        )
        panic = GaugeMetricFamily(
            "pilotfish_cluster_panic", "1 while the cluster balances in panic mode.", labels=c
        )
        panics = CounterMetricFamily(
            "pilotfish_cluster_panics", "Times the cluster entered panic mode.", labels=c
        )
        budget = GaugeMetricFamily(
            "pilotfish_cluster_retry_budget_remaining",
            "Retries the retry budget would grant now.",
            labels=c,
        )
        in_flight = GaugeMetricFamily(
            "pilotfish_upstream_requests_in_flight", "Requests in flight to the cluster.", labels=c
        )
        overflow = CounterMetricFamily(
            "pilotfish_upstream_overflow",
            "Requests refused because the cluster had max_requests in flight.",
            labels=c,
        )
        ep_in_flight = GaugeMetricFamily(
            "pilotfish_endpoint_in_flight", "Attempts in flight to the endpoint.", labels=e
        )
        breaker = GaugeMetricFamily(
            "pilotfish_endpoint_breaker_state",
            "Circuit breaker state: 1 for the current state, 0 for the others.",
            labels=[*e, "state"],
        )
        ejected = GaugeMetricFamily(
            "pilotfish_endpoint_ejected",
            "1 while outlier detection has the endpoint ejected.",
            labels=e,
        )
        healthy = GaugeMetricFamily(
            "pilotfish_endpoint_healthy",
            "Active health check verdict: 1 healthy, 0 unhealthy.",
            labels=e,
        )
        info = GaugeMetricFamily(
            "pilotfish_endpoint_info",
            "1 for each endpoint of the current snapshot, labelled with its name.",
            labels=e,
        )
        for name, cluster in self._clusters.items():
            members.add_metric([name], len(cluster.member_ids))
            available.add_metric([name], cluster.available_count())
            panic.add_metric([name], 1.0 if cluster.panic else 0.0)
            panics.add_metric([name], cluster.panic_count)
            budget.add_metric([name], cluster.budget.remaining())
            in_flight.add_metric([name], cluster.limit.in_flight)
            overflow.add_metric([name], cluster.limit.overflows)
            for endpoint_id in cluster.member_ids:
                state = cluster.states[endpoint_id]
                labels = [name, endpoint_id, state.endpoint.name]
                info.add_metric(labels, 1.0)
                ep_in_flight.add_metric(labels, state.in_flight)
                if state.breaker is not None:
                    current = state.breaker.state
                    for s in BREAKER_STATES:
                        breaker.add_metric([*labels, s], 1.0 if s == current else 0.0)
                if cluster.outlier is not None:
                    ejected.add_metric(
                        labels, 1.0 if cluster.outlier.is_ejected(endpoint_id) else 0.0
                    )
                if cluster.health is not None:
                    healthy.add_metric(
                        labels, 1.0 if cluster.health.is_healthy(endpoint_id) else 0.0
                    )
        yield from (
            members,
            available,
            panic,
            panics,
            budget,
            in_flight,
            overflow,
            ep_in_flight,
            breaker,
            ejected,
            healthy,
            info,
        )

    def _discovery_metrics(self) -> Iterator[Metric]:
        c = ["cluster"]
        updates = CounterMetricFamily(
            "pilotfish_discovery_updates", "Endpoint snapshots that changed the cluster.", labels=c
        )
        errors = CounterMetricFamily(
            "pilotfish_discovery_errors", "Failed discovery refreshes.", labels=c
        )
        failing = GaugeMetricFamily(
            "pilotfish_discovery_failing",
            "1 while discovery refreshes fail (the last good snapshot is served).",
            labels=c,
        )
        last = GaugeMetricFamily(
            "pilotfish_discovery_last_success_timestamp_seconds",
            "Unix time of the last successful discovery refresh.",
            labels=c,
        )
        for name, source in self._sources.items():
            watch = source.watch
            updates.add_metric([name], watch.updates)
            errors.add_metric([name], watch.errors)
            failing.add_metric([name], 1.0 if watch.failing else 0.0)
            if watch.last_success is not None:
                last.add_metric([name], watch.last_success)
        yield from (updates, errors, failing, last)
