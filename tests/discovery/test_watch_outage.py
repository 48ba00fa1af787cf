"""Watch: an outage is told once when it starts and once when it ends, in accurate words."""

from __future__ import annotations

import logging

import pytest

from discovery.model import Endpoint, EndpointSet
from discovery.watch import Outage, endpoint_watch, served


def snapshot(*ports: int) -> EndpointSet:
    return EndpointSet.of(Endpoint("10.0.0.1", p) for p in ports)


def test_an_outage_is_told_when_it_starts_and_when_it_ends_only() -> None:
    told: list[Outage] = []
    watch = endpoint_watch("consul:web", on_outage=told.append)
    watch.publish(snapshot(80, 81))
    assert watch.fail("HTTP 500") is True
    assert watch.fail("HTTP 500 again") is False
    assert told == [Outage("consul:web", True, "HTTP 500", 2)]
    watch.publish(snapshot(80, 81))  # the same content: no change, but the outage is over
    watch.publish(snapshot(80, 81))
    assert told[1:] == [Outage("consul:web", False, None, 2)]
    assert not watch.failing and watch.updates == 1


def test_a_source_that_never_answered_serves_no_endpoints_yet() -> None:
    told: list[Outage] = []
    watch = endpoint_watch("dns:web", on_outage=told.append)
    watch.fail("NXDOMAIN")
    assert told == [Outage("dns:web", True, "NXDOMAIN", None)]
    assert told[0].served() == "no endpoints yet"
    watch.publish(snapshot(80))
    assert told[1] == Outage("dns:web", False, None, 1)


@pytest.mark.parametrize(
    ("endpoints", "words"),
    [
        (None, "no endpoints yet"),
        (0, "keeping the last answer, which listed no endpoints"),
        (1, "keeping the last 1 endpoint"),
        (3, "keeping the last 3 endpoints"),
    ],
)
def test_what_is_served_meanwhile_in_words(endpoints: int | None, words: str) -> None:
    assert served(endpoints) == words


def test_without_a_hook_of_its_own_a_watch_logs_the_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="discovery")
    watch = endpoint_watch("consul:web")
    watch.fail("connection refused")
    watch.publish(snapshot())
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "consul:web: refresh failed, no endpoints yet: connection refused"),
        (logging.INFO, "consul:web: recovered, 0 endpoints"),
    ]


def test_a_watch_with_no_hook_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    watch = endpoint_watch("sim", on_outage=None)
    watch.fail("down")
    watch.publish(snapshot(80))
    assert caplog.records == []
