"""``GET /metrics`` on the admin listener, parsed with prometheus_client's own parser."""

from __future__ import annotations

import asyncio

from aiohttp import web

from tests.observability.conftest import scrape
from tests.sidecar.harness import config_yaml, url


async def test_counters_follow_requests_retries_and_an_ejection(backends, sidecar_factory, client):
    bad, good = await backends(2)

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500)

    bad.behaviour = broken
    sc = await sidecar_factory(
        config_yaml(
            [
                {
                    "name": "api",
                    "discovery": {
                        "static": [
                            {"address": "127.0.0.1", "port": bad.port, "name": "bad-one"},
                            good.address,
                        ]
                    },
                    "retries": {"retry_on": ["5xx"], "budget": {"ratio": 0, "min_per_second": 1}},
                    "outlier_detection": {"consecutive_5xx": 3, "base_ejection_time": "60s"},
                }
            ]
        )
    )
    before = await scrape(client, sc)
    assert (
        before.value(
            "pilotfish_downstream_requests_total", listener="upstream:api", code_class="2xx"
        )
        == 0
    )
    # Series read from the state carry the endpoint's name; the info series joins it to
    # the per-request ones.
    named_bad = {"cluster": "api", "endpoint": bad.address, "endpoint_name": "bad-one"}
    named_good = {"cluster": "api", "endpoint": good.address, "endpoint_name": good.address}
    assert before.value("pilotfish_endpoint_ejected", **named_bad) == 0
    assert before.get_value("pilotfish_endpoint_info", **named_bad) == 1
    assert before.get_value("pilotfish_endpoint_info", **named_good) == 1
    assert before.value("pilotfish_discovery_updates_total", cluster="api") == 1
    assert before.value("pilotfish_discovery_last_success_timestamp_seconds", cluster="api") > 0

    cluster = sc.clusters["api"]
    assert cluster.outlier is not None
    sent = 0
    while not cluster.outlier.is_ejected(bad.address):
        assert sent < 20, "the failing endpoint was never ejected"
        async with client.get(url(sc, "upstream:api", "/")) as r:
            assert r.status == 200  # the retry went to the good endpoint
        sent += 1
    for _ in range(3):  # after the ejection everything goes to the good one, first try
        async with client.get(url(sc, "upstream:api", "/")) as r:
            assert r.headers["x-pilotfish-attempts"] == "1"
        sent += 1

    after = await scrape(client, sc)
    listener = {"listener": "upstream:api"}
    assert after.value("pilotfish_downstream_requests_total", **listener, code_class="2xx") == sent
    assert after.value("pilotfish_downstream_request_duration_seconds_count", **listener) == sent
    assert (
        after.value(
            "pilotfish_upstream_attempts_total",
            cluster="api",
            endpoint=bad.address,
            outcome="http_5xx",
        )
        == 3
    )
    assert (
        after.value(
            "pilotfish_upstream_attempts_total",
            cluster="api",
            endpoint=good.address,
            outcome="success",
        )
        == sent
    )
    durations = "pilotfish_upstream_attempt_duration_seconds_count"
    assert after.value(durations, cluster="api", endpoint=bad.address) == 3
    assert after.value(durations, cluster="api", endpoint=good.address) == sent
    assert after.value("pilotfish_upstream_retries_total", cluster="api") == 3
    assert (
        after.value(
            "pilotfish_outlier_ejections_total",
            cluster="api",
            endpoint=bad.address,
            reason="consecutive_5xx",
        )
        == 1
    )
    assert after.value("pilotfish_endpoint_ejected", **named_bad) == 1
    assert after.value("pilotfish_endpoint_ejected", **named_good) == 0
    assert after.value("pilotfish_cluster_endpoints_available", cluster="api") == 1
    assert after.value("pilotfish_endpoint_breaker_state", **named_good, state="closed") == 1
    assert after.value("pilotfish_endpoint_breaker_state", **named_good, state="open") == 0
    assert after.value("pilotfish_cluster_panic", cluster="api") == 0
    # 1 retry/s over the 10 s window, three of them spent
    assert before.value("pilotfish_cluster_retry_budget_remaining", cluster="api") == 10
    assert after.value("pilotfish_cluster_retry_budget_remaining", cluster="api") == 7
    assert after.value("pilotfish_downstream_requests_in_flight", **listener) == 0
    assert after.value("pilotfish_ready") == 1


async def test_timeouts_connect_failures_and_overflow_are_counted(
    backends, sidecar_factory, client, closed_port
):
    (slow,) = await backends(1)
    release = asyncio.Event()

    async def stall(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="late")

    slow.behaviour = stall
    sc = await sidecar_factory(
        config_yaml(
            [
                {
                    "name": "slow",
                    "discovery": {"static": [slow.address]},
                    "retries": {"attempts": 0, "per_try_timeout": "100ms"},
                },
                {
                    "name": "narrow",
                    "discovery": {"static": [slow.address]},
                    "retries": {"attempts": 0, "per_try_timeout": 0},
                    "circuit_breakers": {"max_requests": 1},
                },
                {
                    "name": "dead",
                    "discovery": {"static": [f"127.0.0.1:{closed_port}"]},
                    "retries": {"attempts": 0},
                },
            ]
        )
    )
    try:
        async with client.get(url(sc, "upstream:slow", "/")) as r:
            assert r.status == 504
        # One request holds the only slot of ``narrow`` while a second one overflows.
        slow.entered.clear()
        holder = asyncio.create_task(client.get(url(sc, "upstream:narrow", "/")))
        await slow.entered.wait()
        async with client.get(url(sc, "upstream:narrow", "/")) as r:
            assert (r.status, r.headers["x-pilotfish-error"]) == (503, "overflow")
        release.set()
        async with await holder as r:
            assert r.status == 200
        async with client.get(url(sc, "upstream:dead", "/")) as r:
            assert r.status == 502
    finally:
        release.set()

    m = await scrape(client, sc)
    slow_ep = {"cluster": "slow", "endpoint": slow.address}
    dead_ep = {"cluster": "dead", "endpoint": f"127.0.0.1:{closed_port}"}
    assert m.value("pilotfish_upstream_timeouts_total", **slow_ep) == 1
    assert m.value("pilotfish_upstream_attempts_total", **slow_ep, outcome="timeout") == 1
    assert m.value("pilotfish_upstream_overflow_total", cluster="narrow") == 1
    assert m.value("pilotfish_upstream_overflow_total", cluster="slow") == 0
    assert (
        m.value(
            "pilotfish_upstream_attempts_total",
            cluster="narrow",
            endpoint=slow.address,
            outcome="success",
        )
        == 1
    )
    assert m.value("pilotfish_upstream_connect_failures_total", **dead_ep) == 1
    assert m.value("pilotfish_upstream_attempts_total", **dead_ep, outcome="connect_failure") == 1
    assert (
        m.value("pilotfish_downstream_requests_total", listener="upstream:slow", code_class="5xx")
        == 1
    )
    assert (
        m.value("pilotfish_downstream_requests_total", listener="upstream:narrow", code_class="5xx")
        == 1
    )
    assert (
        m.value("pilotfish_downstream_requests_total", listener="upstream:dead", code_class="5xx")
        == 1
    )


async def test_each_sidecar_has_its_own_registry(backends, sidecar_factory, client):
    (backend,) = await backends(1)
    doc = config_yaml([{"name": "api", "discovery": {"static": [backend.address]}}])
    one = await sidecar_factory(doc)
    two = await sidecar_factory(doc)
    for _ in range(3):
        async with client.get(url(one, "upstream:api", "/")) as r:
            assert r.status == 200
    labels = {"listener": "upstream:api", "code_class": "2xx"}
    assert (await scrape(client, one)).value("pilotfish_downstream_requests_total", **labels) == 3
    assert (await scrape(client, two)).value("pilotfish_downstream_requests_total", **labels) == 0
