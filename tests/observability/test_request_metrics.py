"""Per-request accumulators and their scrape-time exposition."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sidecar.telemetry.metrics import (
    LATENCY_BUCKETS,
    CounterChild,
    HistogramChild,
    RequestMetrics,
    counter_values,
)

# Below the first bound, on bounds, between bounds, on the last bound and above it.
OBSERVED = (0.0001, 0.0005, 0.0007, 0.003, 0.3, 1.0, 10.0, 30.0, 31.0, 120.0)


def fresh() -> tuple[CollectorRegistry, RequestMetrics]:
    registry = CollectorRegistry(auto_describe=False)
    return registry, RequestMetrics(registry)


def exposition(registry: CollectorRegistry) -> list[str]:
    return generate_latest(registry).decode().splitlines()


def cumulative(values: tuple[float, ...], bound: float) -> int:
    return sum(1 for v in values if v <= bound)


@pytest.mark.parametrize(
    "amounts, total",
    [((), 0.0), ((1,), 1.0), ((1, 1, 1), 3.0), ((2.5, 0.5), 3.0), ((1, 0), 1.0)],
)
def test_a_counter_child_adds_its_increments(amounts: tuple[float, ...], total: float) -> None:
    child = CounterChild()
    for amount in amounts:
        child.inc(amount)
    assert child.value == total


def test_a_counter_child_counts_one_by_default() -> None:
    child = CounterChild()
    child.inc()
    child.inc()
    assert child.value == 2.0


@pytest.mark.parametrize(
    "value, slot",
    [
        (0.0, 0),
        (0.0001, 0),
        (0.0005, 0),  # on a bound: that bound's bucket, since le means <=
        (0.00051, 1),
        (0.001, 1),
        (0.3, LATENCY_BUCKETS.index(0.5)),
        (30.0, len(LATENCY_BUCKETS) - 1),
        (30.5, len(LATENCY_BUCKETS)),  # above every bound: the +Inf share
    ],
)
def test_a_histogram_child_counts_one_bucket_per_observation(value: float, slot: int) -> None:
    child = HistogramChild(LATENCY_BUCKETS)
    child.observe(value)
    assert [i for i, n in enumerate(child.counts) if n] == [slot]
    assert child.counts[slot] == 1


def test_a_histogram_child_keeps_sum_and_count() -> None:
    child = HistogramChild(LATENCY_BUCKETS)
    for value in OBSERVED:
        child.observe(value)
    assert child.count == len(OBSERVED)
    assert child.sum == pytest.approx(sum(OBSERVED))
    assert len(child.counts) == len(LATENCY_BUCKETS) + 1


def test_counters_are_exported_as_total_with_their_label_values() -> None:
    registry, m = fresh()
    m.downstream_requests[("upstream:api", "2xx")].inc()
    m.downstream_requests[("upstream:api", "2xx")].inc(2)
    m.downstream_requests[("upstream:api", "5xx")].inc()
    m.ejections[("api", "10.0.0.1:80", "consecutive_5xx")].inc()
    lines = exposition(registry)
    assert "# TYPE pilotfish_downstream_requests_total counter" in lines
    assert (
        "# HELP pilotfish_downstream_requests_total "
        "Requests answered on a listener, by status class."
    ) in lines
    assert (
        'pilotfish_downstream_requests_total{code_class="2xx",listener="upstream:api"} 3.0'
    ) in lines
    assert (
        'pilotfish_downstream_requests_total{code_class="5xx",listener="upstream:api"} 1.0'
    ) in lines
    assert (
        "pilotfish_outlier_ejections_total"
        '{cluster="api",endpoint="10.0.0.1:80",reason="consecutive_5xx"} 1.0'
    ) in lines
    assert not [line for line in lines if "_created" in line]


def test_a_histogram_is_exported_with_cumulative_buckets_inf_count_and_sum() -> None:
    registry, m = fresh()
    for value in OBSERVED:
        m.attempt_duration[("api", "10.0.0.1:80")].observe(value)
    lines = exposition(registry)
    assert "# TYPE pilotfish_upstream_attempt_duration_seconds histogram" in lines
    name = "pilotfish_upstream_attempt_duration_seconds"
    buckets = [line for line in lines if line.startswith(f"{name}_bucket")]
    expected = [
        f'{name}_bucket{{cluster="api",endpoint="10.0.0.1:80",le="{le}"}} '
        f"{float(cumulative(OBSERVED, bound))}"
        for le, bound in [(repr(b), b) for b in LATENCY_BUCKETS] + [("+Inf", math.inf)]
    ]
    assert buckets == expected
    assert f'{name}_count{{cluster="api",endpoint="10.0.0.1:80"}} {float(len(OBSERVED))}' in lines
    sum_line = next(line for line in lines if line.startswith(f"{name}_sum"))
    assert float(sum_line.rsplit(" ", 1)[1]) == pytest.approx(sum(OBSERVED))


def test_unlabelled_counters_are_exported_from_the_start_and_count() -> None:
    registry, m = fresh()
    lines = exposition(registry)
    assert "pilotfish_trace_spans_dropped_total 0.0" in lines
    assert "pilotfish_telemetry_errors_total 0.0" in lines
    m.telemetry_errors_metric.inc()
    m.telemetry_errors_metric.inc()
    m.trace_dropped_metric.inc(3)
    lines = exposition(registry)
    assert "pilotfish_telemetry_errors_total 2.0" in lines
    assert "pilotfish_trace_spans_dropped_total 3.0" in lines


def test_span_export_results_are_exported_even_before_any_export() -> None:
    registry, m = fresh()
    m.spans_failed.inc(4)
    lines = exposition(registry)
    assert 'pilotfish_trace_export_spans_total{result="exported"} 0.0' in lines
    assert 'pilotfish_trace_export_spans_total{result="failed"} 4.0' in lines


def test_the_exposition_parses_back_to_the_accumulated_values() -> None:
    registry, m = fresh()
    for value in OBSERVED:
        m.downstream_duration[("upstream:api",)].observe(value)
    m.downstream_duration[("upstream:web",)].observe(0.02)
    m.attempts[("api", "10.0.0.1:80", "success")].inc(5)
    families = {
        f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())
    }

    attempts = families["pilotfish_upstream_attempts"]
    assert attempts.type == "counter"
    assert [(s.name, s.labels, s.value) for s in attempts.samples] == [
        (
            "pilotfish_upstream_attempts_total",
            {"cluster": "api", "endpoint": "10.0.0.1:80", "outcome": "success"},
            5.0,
        )
    ]

    duration = families["pilotfish_downstream_request_duration_seconds"]
    assert duration.type == "histogram"
    for listener, observed in (("upstream:api", OBSERVED), ("upstream:web", (0.02,))):
        samples = [s for s in duration.samples if s.labels["listener"] == listener]
        buckets = {float(s.labels["le"]): s.value for s in samples if s.name.endswith("_bucket")}
        assert buckets == {b: cumulative(observed, b) for b in (*LATENCY_BUCKETS, math.inf)}
        by_name = {s.name.rsplit("_", 1)[1]: s.value for s in samples}
        assert by_name["count"] == len(observed)
        assert by_name["sum"] == pytest.approx(sum(observed))


def test_counter_values_reads_a_labelled_counter_by_label_values() -> None:
    _, m = fresh()
    m.attempts[("api", "a:1", "success")].inc()
    m.attempts[("api", "a:1", "success")].inc()
    m.attempts[("api", "b:1", "timeout")].inc()
    assert counter_values(m.attempts_metric) == {
        ("api", "a:1", "success"): 2.0,
        ("api", "b:1", "timeout"): 1.0,
    }


def test_children_are_created_once_and_refuse_the_wrong_number_of_labels() -> None:
    _, m = fresh()
    assert m.retries[("api",)] is m.retries[("api",)]
    with pytest.raises(ValueError):
        m.retries[("api", "extra")]
    with pytest.raises(ValueError):
        m.retries_metric.inc()


def test_a_second_set_of_request_metrics_on_one_registry_is_refused() -> None:
    registry, _ = fresh()
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        RequestMetrics(registry)
