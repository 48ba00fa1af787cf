"""Endpoint names and state words as an operator reads them: ``/clusters``, ``/events``, the
event log lines, and ``pilotfish demo``'s view, all in the same words."""

from __future__ import annotations

import logging
import random

import aiohttp
import pytest
import yaml
from aiohttp import web

from discovery.model import Endpoint, EndpointSet
from resilience.clock import FakeClock
from resilience.outcome import Outcome
from sidecar.cluster import Cluster
from sidecar.config.load import load_text
from sidecar.demo import View
from sidecar.endpoint_state import STATES, endpoint_state
from tests.sidecar.harness import config_yaml, url


def make_cluster(clock: FakeClock, endpoints: list[Endpoint]) -> Cluster:
    doc = {
        "service": {"name": "t", "port": 1},
        "upstreams": [
            {
                "name": "api",
                "listen": "127.0.0.1:0",
                "discovery": {"static": [e.id for e in endpoints]},
                "circuit_breakers": {"endpoint": {"fail_max": 2, "reset_timeout": "10s"}},
                "outlier_detection": {
                    "consecutive_5xx": 3,
                    "base_ejection_time": "60s",
                    "max_ejection_percent": 100,
                },
                "health_check": {"tcp": {}, "unhealthy_threshold": 1},
            }
        ],
    }
    config = load_text(yaml.safe_dump(doc), environ={}).upstreams[0]
    cluster = Cluster.from_config(config, clock=clock, rng=random.Random(1))
    cluster.update(EndpointSet.of(endpoints))
    return cluster


def test_each_state_has_its_word_and_the_first_that_holds_wins() -> None:
    clock = FakeClock()
    eps = [Endpoint("127.0.0.1", 9000 + i) for i in range(4)]
    cluster = make_cluster(clock, eps)
    ejected, unhealthy, broken, fine = (e.id for e in eps)
    for _ in range(3):
        cluster.record(cluster.states[ejected], Outcome.HTTP_5XX)
    assert cluster.health is not None
    cluster.health.record(unhealthy, False)
    cluster.health.record(ejected, False)  # ejected and unhealthy: ejected is said
    breaker = cluster.states[broken].breaker
    assert breaker is not None
    for _ in range(2):
        permit = breaker.try_acquire()
        assert permit is not None
        permit.record(Outcome.CONNECT_FAILURE)
    words = {i: endpoint_state(cluster, i) for i in cluster.member_ids}
    assert words == {
        ejected: "ejected",
        unhealthy: "unhealthy",
        broken: "breaker open",
        fine: "available",
    }
    clock.advance(10.0)  # the open period is over: one trial may go
    assert endpoint_state(cluster, broken) == "breaker half-open"
    assert set(words.values()) | {"breaker half-open"} == set(STATES)


def test_the_demo_says_what_the_admin_views_say() -> None:
    clock = FakeClock()
    alpha, bravo = Endpoint("127.0.0.1", 9001, name="alpha"), Endpoint("127.0.0.1", 9002)
    cluster = make_cluster(clock, [alpha, bravo])
    for _ in range(3):
        cluster.record(cluster.states[bravo.id], Outcome.HTTP_5XX)

    class Running:
        clusters = {"catalog": cluster}

    view = View({"alpha": alpha.id, "bravo": bravo.id}, "http://127.0.0.1:1/")
    frame = view.render(1.0, 30.0, Running(), "")  # type: ignore[arg-type]
    lines = frame.splitlines()
    assert any(line.split()[:2] == ["endpoint", "address"] for line in lines)
    (bravo_line,) = [line for line in lines if line.strip().startswith("bravo")]
    assert bravo_line.rstrip().endswith(" ejected")
    (alpha_line,) = [line for line in lines if line.strip().startswith("alpha")]
    assert alpha_line.rstrip().endswith(" available")
    assert "EJECTED" not in frame


async def test_clusters_and_events_name_endpoints_and_say_their_state(
    backends, sidecar_factory, client: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pilotfish.events")
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
                            {"address": "127.0.0.1", "port": bad.port, "name": "api-bad"},
                            good.address,
                        ]
                    },
                    "retries": {"attempts": 0},
                    "outlier_detection": {"consecutive_5xx": 2, "base_ejection_time": "60s"},
                }
            ]
        )
    )
    for _ in range(6):
        async with client.get(url(sc, "upstream:api", "/")) as r:
            await r.read()
    async with client.get(url(sc, "admin", "/clusters")) as r:
        (api,) = (await r.json())["clusters"]
    by_id = {e["id"]: e for e in api["endpoints"]}
    assert (by_id[bad.address]["name"], by_id[bad.address]["state"]) == ("api-bad", "ejected")
    assert by_id[bad.address]["available"] is False
    assert (by_id[good.address]["name"], by_id[good.address]["state"]) == (
        good.address,
        "available",
    )

    async with client.get(url(sc, "admin", "/events")) as r:
        events = (await r.json())["events"]
    (ejected,) = [e for e in events if e["kind"] == "endpoint_ejected"]
    assert (ejected["endpoint"], ejected["endpoint_name"]) == (bad.address, "api-bad")
    (ready,) = [e for e in events if e["kind"] == "cluster_ready"]
    assert ready["message"] == (
        f"upstream api has its first endpoint list: api-bad ({bad.address}), {good.address}"
        if bad.address < good.address
        else f"upstream api has its first endpoint list: {good.address}, api-bad ({bad.address})"
    )
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        line.startswith(f"endpoint api-bad ({bad.address}) of api ejected: consecutive_5xx")
        for line in logged
    ), logged
