"""Panic is decided at once after an endpoint's state changes, and not on every pick."""

from __future__ import annotations

import random

import pytest
import yaml

from discovery.model import Endpoint, EndpointSet
from resilience.clock import FakeClock
from resilience.outcome import Outcome
from sidecar.cluster import PANIC_RECHECK, Cluster
from sidecar.config.load import load_text

MEMBERS = [Endpoint("127.0.0.1", 9000 + i) for i in range(4)]


def make_cluster(clock: FakeClock) -> Cluster:
    doc = {
        "service": {"name": "t", "port": 1},
        "upstreams": [
            {
                "name": "api",
                "listen": "127.0.0.1:0",
                "discovery": {"static": [e.id for e in MEMBERS]},
                "panic_threshold": 50,
                "circuit_breakers": {"endpoint": None},
                "outlier_detection": {
                    "consecutive_5xx": 1,
                    "base_ejection_time": "10s",
                    "max_ejection_percent": 100,
                },
            }
        ],
    }
    config = load_text(yaml.safe_dump(doc), environ={}).upstreams[0]
    cluster = Cluster.from_config(config, clock=clock, rng=random.Random(1))
    cluster.update(EndpointSet.of(MEMBERS, source="static"))
    return cluster


def test_failures_that_eject_most_members_put_the_next_pick_in_panic() -> None:
    clock = FakeClock()
    cluster = make_cluster(clock)
    assert cluster.pick(None, []) is not None and not cluster.panic
    for member in MEMBERS[:3]:
        cluster.record(cluster.states[member.id], Outcome.HTTP_5XX)
    cluster.pick(None, [])  # the clock has not moved: the failures alone force a new decision
    assert cluster.panic


def test_the_end_of_an_ejection_ends_panic_within_the_recheck_period() -> None:
    clock = FakeClock()
    cluster = make_cluster(clock)
    for member in MEMBERS[:3]:
        cluster.record(cluster.states[member.id], Outcome.HTTP_5XX)
    cluster.pick(None, [])
    assert cluster.panic
    clock.advance(10.0 + PANIC_RECHECK)
    cluster.pick(None, [])
    assert not cluster.panic


@pytest.mark.parametrize("advance, scans", [(0.0, 1), (PANIC_RECHECK, 2)])
def test_a_steady_cluster_scans_its_members_once_per_recheck_period(
    advance: float, scans: int
) -> None:
    clock = FakeClock()
    cluster = make_cluster(clock)
    calls = 0
    scan = cluster._below_panic_threshold

    def counted() -> bool:
        nonlocal calls
        calls += 1
        return scan()

    cluster._below_panic_threshold = counted  # type: ignore[method-assign]
    for _ in range(500):
        cluster.pick(None, [])
    clock.advance(advance)
    for _ in range(500):
        cluster.pick(None, [])
    assert calls == scans
