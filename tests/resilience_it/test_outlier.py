"""Outlier detection on real traffic: ejection, return, longer re-ejection, ring-hash fallback."""

from __future__ import annotations

import asyncio

from resilience.hashring import HashRing
from resilience.outlier import Ejected
from tests.resilience_it.support import (
    admin_clusters,
    answer,
    api,
    cluster_of,
    endpoint_view,
    served_by,
    wait_until,
)

BASE_EJECTION = 0.5


async def test_failing_backend_is_ejected_and_ejected_longer_when_it_fails_again(lab, client):
    backends = await lab.start_backends(3)
    bad = backends[0]
    bad.behaviour = answer(bad, 500)
    sc = await lab.start_sidecar(
        [b.address for b in backends],
        outlier_detection={
            "consecutive_5xx": 5,
            "base_ejection_time": BASE_EJECTION,
            "max_ejection_time": "10s",
        },
        # Only outlier detection acts here; the breaker would also trip on five failures.
        circuit_breakers={"endpoint": None},
    )
    cluster = cluster_of(sc)
    ejections: list[tuple[Ejected, float]] = []
    ejected = asyncio.Event()

    def on_ejection(event: Ejected) -> None:
        ejections.append((event, sc.clock.now()))
        ejected.set()

    cluster.on_ejection.append(on_ejection)

    async def send_until_ejected() -> list[int]:
        ejected.clear()
        statuses = []
        while not ejected.is_set():
            async with client.get(api(sc)) as r:
                statuses.append(r.status)
        return statuses

    async with asyncio.timeout(10):
        first = await send_until_ejected()
        # A 500 is not retried by default: the client saw each of the five failures.
        assert first.count(500) == 5
        assert bad.hits == 5
        view = endpoint_view(await admin_clusters(client, sc), "api", bad.address)
        assert view["available"] is False
        assert view["outlier"]["ejected"] is True
        assert view["outlier"]["times_ejected"] == 1

        hits_while_ejected = bad.hits
        for _ in range(12):
            async with client.get(api(sc)) as r:
                assert r.status == 200
                assert served_by(r) != bad.name
        assert bad.hits == hits_while_ejected

        # After the ejection time real traffic reaches it again and it fails again.
        second = await send_until_ejected()
        assert second.count(500) == 5
        assert bad.hits == 10

    view = endpoint_view(await admin_clusters(client, sc), "api", bad.address)
    assert view["outlier"]["ejected"] is True
    assert view["outlier"]["times_ejected"] == 2
    (one, at_one), (two, at_two) = ejections
    assert (one.times, two.times) == (1, 2)
    assert one.until - at_one <= BASE_EJECTION < two.until - at_two <= 2 * BASE_EJECTION
    assert view["outlier"]["ejected_until"] == two.until


async def test_ring_hash_key_moves_to_the_ring_successor_while_its_node_is_ejected(lab, client):
    backends = await lab.start_backends(3)
    by_id = {b.address: b for b in backends}
    sc = await lab.start_sidecar(
        list(by_id),
        balancer={"policy": "ring_hash", "hash_on": "header:x-user"},
        outlier_detection={"consecutive_5xx": 3, "base_ejection_time": "1s"},
        circuit_breakers={"endpoint": None},
    )
    cluster = cluster_of(sc)
    # The same ring the cluster builds (default sizes, weight 1), for the expected answers.
    ring = HashRing([(i, 1) for i in cluster.member_ids])
    node = cluster.member_ids[0]
    keys = [k for k in (f"user-{i}" for i in range(200)) if ring.primary(k) == node][:12]
    successor = {k: ring.pick(k, lambda m: m != node) for k in keys}
    # Both other nodes appear as successors, so a wrong fallback cannot pass by luck.
    assert len(set(successor.values())) == 2

    async def served(key: str) -> tuple[int, str]:
        async with client.get(api(sc), headers={"x-user": key}) as r:
            return r.status, served_by(r)

    async with asyncio.timeout(10):
        for key in keys:
            assert cluster.primary(key) == node
            assert await served(key) == (200, by_id[node].name)

        by_id[node].behaviour = answer(by_id[node], 500)
        for _ in range(3):
            assert (await served(keys[0]))[0] == 500
        assert cluster.outlier.is_ejected(node)

        by_id[node].behaviour = None
        for key in keys:
            assert await served(key) == (200, by_id[successor[key]].name)

        await wait_until(lambda: not cluster.outlier.is_ejected(node), 5, "the ejection to end")
        for key in keys:
            assert await served(key) == (200, by_id[node].name)
