"""The per-endpoint circuit breaker and the cluster's request limit, on real traffic."""

from __future__ import annotations

import asyncio
import time

from tests.resilience_it.support import Gate, answer, api, cluster_of, served_by, wait_until

FAIL_MAX = 3
SUCCESS_THRESHOLD = 2


async def test_breaker_opens_admits_one_half_open_probe_and_closes(lab, client):
    backends = await lab.start_backends(3)
    flaky = backends[0]
    others = backends[1:]
    flaky.behaviour = answer(flaky, 503)
    sc = await lab.start_sidecar(
        [b.address for b in backends],
        outlier_detection=None,  # only the breaker acts in this test
        circuit_breakers={
            "endpoint": {
                "fail_max": FAIL_MAX,
                "reset_timeout": "500ms",
                "success_threshold": SUCCESS_THRESHOLD,
            }
        },
        retries={"backoff": {"base": "1ms", "max": "5ms"}},
    )
    breaker = cluster_of(sc).states[flaky.address].breaker
    assert breaker is not None

    async def get() -> str:
        async with client.get(api(sc)) as r:
            assert r.status == 200  # a 503 from the flaky one is retried elsewhere
            return served_by(r)

    async with asyncio.timeout(10):
        while breaker.state == "closed":
            await get()
        assert breaker.state == "open"
        assert flaky.hits == FAIL_MAX

        for _ in range(6):
            assert await get() != flaky.name
        assert flaky.hits == FAIL_MAX

        gate = Gate(flaky)
        flaky.behaviour = gate
        await wait_until(lambda: breaker.state == "half_open", 5, "the breaker to half-open")
        before = sum(b.hits for b in others)
        burst = [asyncio.create_task(get()) for _ in range(5)]
        await gate.entered.wait()
        await wait_until(lambda: sum(t.done() for t in burst) == 4, 5, "four requests to finish")
        # One trial reached the endpoint; the other four went elsewhere meanwhile.
        assert flaky.hits == FAIL_MAX + 1
        assert sum(b.hits for b in others) == before + 4
        assert breaker.state == "half_open" and not breaker.admits()
        gate.open()
        assert sorted(await asyncio.gather(*burst)).count(flaky.name) == 1

        # success_threshold trials in a row close it; each waits for the previous one.
        while breaker.state != "closed":
            await get()
    assert flaky.hits == FAIL_MAX + SUCCESS_THRESHOLD
    served = [await get() for _ in range(6)]
    assert served.count(flaky.name) == 2  # back in the round robin


async def test_requests_over_max_requests_overflow_at_once(lab, client):
    (backend,) = await lab.start_backends(1)
    gate = Gate(backend)
    backend.behaviour = gate
    sc = await lab.start_sidecar([backend.address], circuit_breakers={"max_requests": 2})

    async def get() -> int:
        async with client.get(api(sc)) as r:
            await r.read()
            return r.status

    async with asyncio.timeout(10):
        held = [asyncio.create_task(get()) for _ in range(2)]
        await wait_until(lambda: backend.in_flight == 2, 5, "two requests in flight")
        started = time.monotonic()
        async with client.get(api(sc)) as r:
            assert r.status == 503
            assert r.headers["x-pilotfish-error"] == "overflow"
        assert time.monotonic() - started < 0.5
        assert backend.hits == 2
        gate.open()
        assert await asyncio.gather(*held) == [200, 200]
    assert cluster_of(sc).limit.overflows == 1
    assert cluster_of(sc).limit.in_flight == 0
