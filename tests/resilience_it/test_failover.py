"""Failover through a real sidecar: a backend dying under load, hanging backends, retries."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import aiohttp
import pytest
from aiohttp import web

from tests.resilience_it.support import answer, api, cluster_of, hang, kill, served_by

RATE = 500  # requests per second
DURATION = 5.0  # seconds
MAX_CONCURRENCY = 64


async def test_backend_killed_under_load_costs_no_client_request(lab, client):
    backends = await lab.start_backends(3)
    victim = backends[1]
    sc = await lab.start_sidecar(
        [b.address for b in backends],
        retries={"backoff": {"base": "5ms", "max": "20ms"}},
    )
    total = int(RATE * DURATION)
    statuses: Counter[int] = Counter()
    attempts: Counter[str] = Counter()
    errors: list[str] = []
    slots = asyncio.Semaphore(MAX_CONCURRENCY)

    async def one() -> None:
        try:
            async with client.get(api(sc, "/load")) as r:
                await r.read()
                statuses[r.status] += 1
                attempts[r.headers.get("x-pilotfish-attempts", "?")] += 1
                if r.status != 200:
                    errors.append(f"{r.status} {r.headers.get('x-pilotfish-error')}")
        except aiohttp.ClientError as exc:
            errors.append(repr(exc))
        finally:
            slots.release()

    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []
    victim_hits_at_kill = 0
    async with asyncio.timeout(45):
        start = loop.time()
        for i in range(total):
            # Pacing the load generator, not synchronising with the system under test.
            delay = start + i / RATE - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await slots.acquire()
            tasks.append(asyncio.create_task(one()))
            if i == total // 2:
                victim_hits_at_kill = victim.hits
                await kill(victim)
        await asyncio.gather(*tasks)

    assert errors == []
    assert statuses == {200: total}
    assert victim_hits_at_kill > 0  # the victim really was serving before it died
    # Failures did happen (and were retried): the victim is ejected for them.
    assert sum(n for a, n in attempts.items() if a != "1") >= 5
    assert cluster_of(sc).outlier.is_ejected(victim.address)


async def test_hanging_backend_costs_one_per_try_timeout(lab, client):
    per_try = 0.2
    backends = await lab.start_backends(3)
    stuck = backends[0]
    stuck.behaviour = hang(lab.release)
    backoff_max = 0.02
    sc = await lab.start_sidecar(
        [b.address for b in backends],
        retries={"per_try_timeout": per_try, "backoff": {"base": "10ms", "max": backoff_max}},
        timeouts={"total": "5s"},
    )
    # Round robin reaches the stuck backend within three requests.
    async with asyncio.timeout(10):
        for _ in range(3):
            started = time.monotonic()
            async with client.get(api(sc)) as r:
                elapsed = time.monotonic() - started
                assert r.status == 200
                served = served_by(r)
                attempts = r.headers["x-pilotfish-attempts"]
            if stuck.hits:
                break
            assert attempts == "1"
    assert stuck.hits == 1
    assert attempts == "2"
    assert served != stuck.name
    assert per_try <= elapsed < per_try + backoff_max + 0.25


async def test_every_backend_hanging_gets_504_at_the_total_deadline(lab, client):
    backends = await lab.start_backends(3)
    for b in backends:
        b.behaviour = hang(lab.release)
    total = 0.5
    sc = await lab.start_sidecar(
        [b.address for b in backends],
        retries={
            "attempts": 5,
            "per_try_timeout": "200ms",
            "backoff": {"base": "10ms", "max": "20ms"},
        },
        timeouts={"total": total},
    )
    started = time.monotonic()
    async with asyncio.timeout(5), client.get(api(sc)) as r:
        elapsed = time.monotonic() - started
        assert r.status == 504
        assert r.headers["x-pilotfish-error"] == "deadline_exceeded"
        # Two whole tries of 200ms, then a third cut short by the deadline.
        assert r.headers["x-pilotfish-attempts"] == "3"
    assert [b.hits for b in backends] == [1, 1, 1]
    assert total <= elapsed < total + 0.3
    # The two per-try timeouts count against their endpoints, and so does the try the deadline
    # cut short: the request was complete, so all that time was the endpoint's (Envoy records
    # a local-origin timeout for an attempt still awaiting headers at the route timeout).
    cluster = cluster_of(sc)
    counted = [
        cluster.outlier.snapshot(b.address)["consecutive_local_origin_failure"] for b in backends
    ]
    assert sorted(counted) == [1, 1, 1]
    breakers = [cluster.states[b.address].breaker for b in backends]
    assert sorted(b.consecutive_failures for b in breakers if b is not None) == [1, 1, 1]


@pytest.mark.parametrize(
    ("failures", "status", "attempts"),
    [
        (0, 200, "1"),
        (1, 200, "2"),
        (2, 200, "3"),
        (3, 503, "3"),  # two retries allowed: the third 503 goes back to the client
    ],
)
async def test_attempts_header_counts_every_try(lab, client, failures, status, attempts):
    (backend,) = await lab.start_backends(1)
    ok = answer(backend)
    failing = answer(backend, 503)

    async def flaky(request: web.Request) -> web.StreamResponse:
        return await (failing if backend.hits <= failures else ok)(request)

    backend.behaviour = flaky
    sc = await lab.start_sidecar(
        [backend.address],
        retries={"attempts": 2, "backoff": {"base": "1ms", "max": "2ms"}},
        outlier_detection=None,
        circuit_breakers={"endpoint": None},
    )
    async with client.get(api(sc)) as r:
        assert r.status == status
        assert r.headers["x-pilotfish-attempts"] == attempts
    assert backend.hits == int(attempts)
