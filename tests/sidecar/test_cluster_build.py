"""A cluster builds its balancers in slices of the event loop and picks on the old ones meanwhile.

The clock here moves a millisecond each time it is read, so a build that takes many steps
spans many turns of the loop whatever the machine's speed; nothing is timed.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
import yaml

from discovery.model import Endpoint, EndpointSet
from resilience.balancer import balancer_steps
from resilience.hashring import HashRing
from sidecar.cluster import Cluster
from sidecar.config.load import load_text

KEYS = [f"user-{i}" for i in range(300)]
HOSTS = [Endpoint(f"10.0.0.{i}", 8080) for i in range(1, 41)]


class TickingClock:
    """Monotonic time that moves ``step`` (1 ms) at every read."""

    def __init__(self) -> None:
        self.t = 100.0
        self.step = 0.001

    def now(self) -> float:
        self.t += self.step
        return self.t


def make_cluster(clock: TickingClock, policy: str = "ring_hash") -> Cluster:
    doc = {
        "service": {"name": "t", "port": 1},
        "upstreams": [
            {
                "name": "api",
                "listen": "127.0.0.1:0",
                "discovery": {"static": [HOSTS[0].id]},
                "balancer": {"policy": policy, "hash_on": "header:x-user"},
                "circuit_breakers": {"endpoint": None},
                "outlier_detection": None,
            }
        ],
    }
    config = load_text(yaml.safe_dump(doc), environ={}).upstreams[0]
    return Cluster.from_config(config, clock=clock, rng=random.Random(1))


def snapshot(endpoints: list[Endpoint]) -> EndpointSet:
    return EndpointSet.of(endpoints, source="static")


def picked(cluster: Cluster) -> dict[str, str | None]:
    result = {}
    for key in KEYS:
        state = cluster.pick(key, [])
        result[key] = None if state is None else state.id
    return result


def ring_of(endpoints: list[Endpoint]) -> HashRing[str]:
    return HashRing([(e.id, e.weight) for e in endpoints])


async def test_a_large_first_ring_is_built_over_many_turns_of_the_loop() -> None:
    clock = TickingClock()
    cluster = make_cluster(clock)
    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    counter = asyncio.create_task(count_turns())
    cluster.update(snapshot(HOSTS))
    assert cluster.pick("user-1", []) is None  # nothing built yet: as before any snapshot
    async with asyncio.timeout(10):
        await cluster.balanced()
    counter.cancel()
    assert turns > 10
    ring = ring_of(HOSTS)
    assert picked(cluster) == {key: ring.primary(key) for key in KEYS}


async def test_a_change_of_one_endpoint_is_in_use_after_a_turn_of_the_loop() -> None:
    clock = TickingClock()
    cluster = make_cluster(clock)
    cluster.update(snapshot(HOSTS[:20]))
    await cluster.balanced()
    for members in (HOSTS[:21], HOSTS[1:21]):  # a join, then a leave
        cluster.update(snapshot(members))
        await asyncio.sleep(0)
        ring = ring_of(members)
        assert picked(cluster) == {key: ring.primary(key) for key in KEYS}


async def test_while_a_build_runs_keys_of_endpoints_that_left_go_where_the_new_ring_sends() -> None:
    clock = TickingClock()
    cluster = make_cluster(clock)
    cluster.update(snapshot(HOSTS[:30]))
    await cluster.balanced()
    before = ring_of(HOSTS[:30])
    # Ten leave and ten join at once: too many for an edit, so the ring is built afresh.
    after_members = HOSTS[10:40]
    cluster.update(snapshot(after_members))
    after = ring_of(after_members)
    during = picked(cluster)
    left = {e.id for e in HOSTS[:10]}
    assert not left & set(during.values())
    for key, chosen in during.items():
        if before.primary(key) not in left:
            assert chosen == before.primary(key)  # unchanged until the new ring is in use
        elif after.primary(key) in {e.id for e in HOSTS[:30]}:
            assert chosen == after.primary(key)  # the stable successor of the one that left
    async with asyncio.timeout(10):
        await cluster.balanced()
    assert picked(cluster) == {key: after.primary(key) for key in KEYS}


async def test_snapshots_that_arrive_during_a_build_are_built_next_the_latest_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = TickingClock()
    cluster = make_cluster(clock)
    builds: list[int] = []

    def counted(policy: str, members: list[tuple[str, int]], **kwargs: Any) -> Any:
        builds.append(len(members))
        return balancer_steps(policy, members, **kwargs)

    monkeypatch.setattr("sidecar.cluster.balancer_steps", counted)
    cluster.update(snapshot(HOSTS[:30]))
    cluster.update(snapshot(HOSTS[:31]))
    cluster.update(snapshot(HOSTS[:32]))
    async with asyncio.timeout(10):
        await cluster.balanced()
    assert builds == [30, 32]
    ring = ring_of(HOSTS[:32])
    assert picked(cluster) == {key: ring.primary(key) for key in KEYS}


async def test_a_build_that_fails_on_the_loop_leaves_the_balancers_built_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = TickingClock()
    cluster = make_cluster(clock)
    cluster.update(snapshot(HOSTS[:5]))
    await cluster.balanced()
    ring = ring_of(HOSTS[:5])
    failures: list[object] = []
    asyncio.get_running_loop().set_exception_handler(
        lambda _, context: failures.append(context.get("exception"))
    )

    def failing(*args: Any, **kwargs: Any) -> Any:
        yield
        raise RuntimeError("boom")

    monkeypatch.setattr("sidecar.cluster.balancer_steps", failing)
    clock.step = 1.0  # every step ends its slice: the failure happens on the loop
    cluster.update(snapshot(HOSTS[:6]))
    async with asyncio.timeout(10):
        await cluster.balanced()
    assert [type(failure) for failure in failures] == [RuntimeError]
    assert picked(cluster) == {key: ring.primary(key) for key in KEYS}
    monkeypatch.undo()
    cluster.update(snapshot(HOSTS[:6]))
    async with asyncio.timeout(10):
        await cluster.balanced()
    ring = ring_of(HOSTS[:6])
    assert picked(cluster) == {key: ring.primary(key) for key in KEYS}


def test_without_a_running_loop_a_build_completes_in_update() -> None:
    cluster = make_cluster(TickingClock())
    cluster.update(snapshot(HOSTS))
    ring = ring_of(HOSTS)
    assert picked(cluster) == {key: ring.primary(key) for key in KEYS}


async def test_a_sidecar_serves_once_its_rings_are_in_use(sidecar_factory: Any) -> None:
    hosts = [f"10.0.1.{i}:8080" for i in range(1, 61)]
    sidecar = await sidecar_factory(
        yaml.safe_dump(
            {
                "service": {"name": "orders", "port": 1},
                "listeners": {"admin": {"address": "127.0.0.1", "port": 0}},
                "upstreams": [
                    {
                        "name": "api",
                        "listen": "127.0.0.1:0",
                        "discovery": {"static": hosts},
                        "balancer": {"policy": "ring_hash", "hash_on": "header:x-user"},
                    }
                ],
                "access_log": {"enabled": False},
                "tracing": {"enabled": False},
            }
        )
    )
    cluster = sidecar.clusters["api"]
    ring = HashRing([(host, 1) for host in hosts])
    assert picked(cluster) == {key: ring.primary(key) for key in KEYS}
