"""Each policy of the live sidecar, met through a simulation: timeouts, health checks and
their probe schedule, panic, admission limits, discovery changes and outages."""

from __future__ import annotations

from typing import Any

import pytest

from tests.simulate.support import BARE, config, run

EVEN_100 = """
duration: 30s
load: {rate: 100, arrivals: even}
upstreams:
  api:
"""


def no_breakers(**policies: Any) -> dict[str, Any]:
    return {**BARE, **policies}


def test_a_hanging_endpoint_costs_a_per_try_timeout_then_is_ejected():
    s = run(
        config(retries={"per_try_timeout": "200ms"}),
        EVEN_100 + "    endpoints: [a, b]\n    faults: [{endpoint: b, kind: hang}]\n",
    )
    assert s["success_rate"] == 1.0  # every timeout was retried on a
    (ejection,) = s["ejection_log"]
    assert ejection["reason"] == "consecutive_local_origin_failure"
    # b took every other request until its fifth timeout, 200 ms after it was sent.
    assert ejection["at"] == pytest.approx(0.2 + 4 * 0.02, abs=0.011)
    # The ones already in flight then timed out as well: one every 20 ms for 200 ms more.
    assert s["attempts_by_outcome"]["timeout"] == 15
    assert s["latency_ms"]["max"] == pytest.approx(200 + 5, abs=25 + 1)  # + the backoff


HEALTH_CHECK = {
    "http": {"path": "/health"},
    "interval": "1s",
    "jitter": 0,
    "timeout": "500ms",
    "unhealthy_threshold": 3,
    "healthy_threshold": 2,
}


def test_health_checks_follow_the_live_probe_schedule():
    s = run(
        config(health_check=HEALTH_CHECK, **BARE),
        EVEN_100.replace("30s", "60s")
        + "    endpoints: [a, b, c]\n"
        + "    faults: [{endpoint: b, kind: hang, at: 10s, for: 30s}]\n",
    )
    # Rounds start 1.005 s apart (5 ms probes, 1 s interval); from 10.05 s each round
    # waits for b's 0.5 s probe timeout: failures at 10.55, 12.05, 13.55 (unhealthy). The
    # first round after 40 s passes at 40.055 and the next at 41.06 (healthy again).
    assert s["unhealthy_s"] == {"a": 0.0, "b": pytest.approx(41.06 - 13.55, abs=0.06), "c": 0.0}
    attempts = s["timeline"]["attempts"]["b"]
    assert sum(attempts[15:41]) == 0  # no traffic while unhealthy (last timeouts end by 14.6)
    # Until then b took a third of the requests, each timing out after the per-try 1 s.
    assert s["client_answers"]["504 upstream_timeout"] == pytest.approx(3.55 * 100 / 3, abs=2)


def test_probes_that_do_not_meet_a_fault_keep_the_endpoint_healthy():
    s = run(
        config(health_check=HEALTH_CHECK, **BARE),
        EVEN_100 + "    endpoints: [a, b]\n"
        "    faults: [{endpoint: b, kind: errors, status: 500, probes: false}]\n",
    )
    assert s["unhealthy_s"]["b"] == 0.0
    assert s["success_rate"] == pytest.approx(0.5, abs=0.001)


@pytest.mark.parametrize(("threshold", "success", "panics"), [(50, 2 / 3, 1), (0, 0.977, 0)])
def test_panic_spreads_traffic_over_every_endpoint_when_too_few_are_healthy(
    threshold, success, panics
):
    s = run(
        config(health_check=HEALTH_CHECK, panic_threshold=threshold, **BARE),
        EVEN_100.replace("30s", "60s")
        + "    endpoints: [a, b, c]\n"
        + "    faults: [{endpoints: [a, b], kind: refuse, at: 10s, for: 30s}]\n",
    )
    assert s["panic"]["entered"] == panics
    assert s["success_rate"] == pytest.approx(success, abs=0.002)


def test_connections_per_endpoint_and_waiting_requests_are_capped():
    limits = {"max_connections": 2, "max_pending": 1, "endpoint": None}
    s = run(
        config(**no_breakers(circuit_breakers=limits)),
        EVEN_100 + "    latency: 100ms\n    endpoints: [a, b]\n",
    )
    # Two connections of 100 ms each serve 20 requests a second per endpoint: 40 of 100.
    assert s["success_rate"] == pytest.approx(0.4, abs=0.005)
    assert s["client_answers"]["503 overflow"] == s["attempts_by_outcome"]["local_rejection"]


def test_requests_in_flight_are_capped_before_any_attempt():
    limits = {"max_requests": 3, "endpoint": None}
    s = run(
        config(**no_breakers(circuit_breakers=limits)),
        EVEN_100 + "    latency: 100ms\n    endpoints: [a, b]\n",
    )
    assert s["success_rate"] == pytest.approx(0.3, abs=0.01)  # 3 in flight of 100 ms each
    assert s["attempts"] == s["client_answers"]["200"]  # refused ones made no attempt


DISCOVERY = """
duration: 30s
load: {rate: 100, arrivals: even}
upstreams:
  api:
    endpoints: [a, b, {name: c, in_discovery: false}]
    discovery:
      - {kind: remove, endpoint: b, at: 10s, for: 5s}
      - {kind: add, endpoint: c, at: 20s}
"""


def test_discovery_changes_reach_the_cluster():
    s = run(config(), DISCOVERY)
    attempts = s["timeline"]["attempts"]
    assert attempts["b"][9] > 0 and sum(attempts["b"][10:15]) == 0 and attempts["b"][15] > 0
    assert sum(attempts["c"][:20]) == 0 and attempts["c"][20] > 0
    assert s["gone_s"]["b"] == pytest.approx(5.0, abs=0.06)


def test_while_discovery_is_down_the_cluster_keeps_its_last_endpoints():
    outage = "      - {kind: unavailable, at: 5s, for: 20s}\n"
    s = run(config(), DISCOVERY + outage)
    attempts = s["timeline"]["attempts"]
    assert all(attempts["b"][10:15])  # the removal was never seen
    assert sum(attempts["c"][:25]) == 0 and attempts["c"][25] > 0  # added once it came back


REFUSING_ONE_OF_THREE = """
duration: 20s
load:
  rate: 300
  mix: [{method: %s, body: %s}]
upstreams:
  api:
    endpoints: [a, b, c]
    faults: [{endpoint: c, kind: %s}]
"""


@pytest.mark.parametrize(
    ("method", "body", "kind", "success"),
    [
        ("GET", "0", "refuse", 1.0),  # retried elsewhere
        ("POST", "1KiB", "refuse", 1.0),  # the endpoint never saw it: safe to retry
        ("POST", "1KiB", "errors", 2 / 3),  # it did: not retried
        ("PUT", "1KiB", "errors", 1.0),  # idempotent
        ("PUT", "1MiB", "refuse", 2 / 3),  # beyond max_replay_bytes: streamed, sent once
    ],
)
def test_what_is_retried_depends_on_the_method_and_the_body_size(method, body, kind, success):
    s = run(
        config(
            # A third of the requests need a retry: more than the default budget's 20 %.
            retries={"budget": {"ratio": 1.0}},
            outlier_detection=None,
            circuit_breakers={"endpoint": None},
        ),
        REFUSING_ONE_OF_THREE % (method, body, kind),
    )
    assert s["success_rate"] == pytest.approx(success, abs=0.01)
