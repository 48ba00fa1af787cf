"""State changes are events: each is published once, logged once at its level, listed on
the admin listener; the publishers know none of the listeners."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web

from sidecar.events import KINDS, EventBus
from tests.resilience_it.support import answer, api, cluster_of, wait_until


def lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


async def test_an_ejection_and_its_end_are_logged_once_each(lab, client, caplog):
    caplog.set_level(logging.INFO, logger="pilotfish.events")
    good, bad = await lab.start_backends(2)
    bad.behaviour = answer(bad, 500)
    sc = await lab.start_sidecar(
        [good.address, bad.address],
        outlier_detection={"consecutive_5xx": 3, "base_ejection_time": "300ms"},
        circuit_breakers={"endpoint": {"fail_max": 3, "reset_timeout": "10s"}},
        retries={"attempts": 0},
    )
    cluster = cluster_of(sc)
    for _ in range(12):
        async with client.get(api(sc)) as r:
            await r.read()
    ejected = lines(caplog, f"endpoint {bad.address} of api ejected")
    assert ejected == [
        f"endpoint {bad.address} of api ejected: consecutive_5xx, for 0.3s (ejection 1)"
    ]
    opened = lines(caplog, f"endpoint {bad.address} of api breaker opened")
    assert len(opened) == 1
    assert [r.levelname for r in caplog.records if "ejected" in r.getMessage()] == ["WARNING"]
    await wait_until(lambda: not cluster.outlier.is_ejected(bad.address), 5, "the return")
    back = lines(caplog, f"endpoint {bad.address} of api back from ejection")
    assert back == [f"endpoint {bad.address} of api back from ejection: its ejection time is over"]
    kinds = [e.kind for e in sc.events.history if e.endpoint == bad.address]
    assert kinds.count("endpoint_ejected") == 1 and kinds.count("endpoint_returned") == 1


def test_a_subscriber_that_fails_costs_neither_the_publisher_nor_the_others(caplog):
    bus = EventBus()
    seen: list[str] = []

    def broken(event: object) -> None:
        raise RuntimeError("a bug in a listener")

    bus.subscribe(broken)
    bus.subscribe(lambda e: seen.append(e.kind))
    bus.publish("breaker_opened", cluster="api", endpoint="10.0.0.1:80")
    assert seen == ["breaker_opened"]
    assert "event subscriber failed" in caplog.text


def test_every_kind_has_a_level_and_an_unknown_one_is_refused():
    assert all(level in (logging.INFO, logging.WARNING) for level, _ in KINDS.values())
    with pytest.raises(ValueError, match="unknown event kind"):
        EventBus().publish("endpoint_exploded")


async def test_health_verdicts_are_events(lab, client):
    (backend,) = await lab.start_backends(1)
    status = {"value": 200}

    async def health(request: web.Request) -> web.Response:
        return web.Response(status=status["value"])

    backend.behaviour = health
    sc = await lab.start_sidecar(
        [backend.address],
        health_check={
            "http": {"path": "/health"},
            "interval": "50ms",
            "unhealthy_threshold": 1,
            "healthy_threshold": 1,
        },
    )
    status["value"] = 503
    await wait_until(
        lambda: any(e.kind == "endpoint_unhealthy" for e in sc.events.history), 5, "unhealthy"
    )
    status["value"] = 200
    await wait_until(
        lambda: any(e.kind == "endpoint_healthy" for e in sc.events.history), 5, "healthy again"
    )
