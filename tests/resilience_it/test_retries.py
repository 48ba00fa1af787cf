"""Retry limits on real traffic: the retry budget, bodies that cannot be replayed, POST safety."""

from __future__ import annotations

import asyncio
import math

import pytest

from tests.resilience_it.support import answer, api, closed_port

MIB = 1024 * 1024
ONLY_RETRIES = {"outlier_detection": None, "circuit_breakers": {"endpoint": None}}


async def test_retries_stay_within_the_retry_budget(lab, client):
    backends = await lab.start_backends(3)
    for b in backends:
        b.behaviour = answer(b, 503)
    ratio, min_per_second, window = 0.2, 0.5, 20.0
    sc = await lab.start_sidecar(
        [b.address for b in backends],
        retries={
            "attempts": 2,
            "backoff": {"base": "1ms", "max": "2ms"},
            "budget": {"ratio": ratio, "min_per_second": min_per_second, "window": window},
        },
        **ONLY_RETRIES,
    )
    requests = 100
    attempts = 0
    async with asyncio.timeout(20):
        for _ in range(requests):
            async with client.get(api(sc)) as r:
                assert r.status == 503
                attempts += int(r.headers["x-pilotfish-attempts"])
    hits = sum(b.hits for b in backends)
    allowance = math.floor(min_per_second * window + ratio * requests)
    assert hits == attempts
    # Every request wanted two retries, far more than the budget: it is spent exactly.
    assert hits == requests + allowance
    assert hits < requests * 3


@pytest.mark.parametrize(
    ("method", "size", "hits", "why"),
    [
        ("POST", MIB, 1, "a streamed body cannot be sent again"),
        ("PUT", MIB, 1, "idempotent, but a streamed body cannot be sent again"),
        ("POST", 1024, 1, "not idempotent: the upstream may have acted on it"),
        ("PUT", 1024, 3, "idempotent and buffered: retried twice"),
    ],
)
async def test_bad_gateway_is_retried_only_for_replayable_idempotent_requests(
    lab, client, method, size, hits, why
):
    backends = await lab.start_backends(2)
    for b in backends:
        b.behaviour = answer(b, 502)
    sc = await lab.start_sidecar(
        [b.address for b in backends],
        retries={"backoff": {"base": "1ms", "max": "2ms"}},
        **ONLY_RETRIES,
    )
    body = b"x" * size
    async with client.request(method, api(sc), data=body) as r:
        assert r.status == 502
        assert "x-pilotfish-error" not in r.headers  # the upstream's own 502, passed through
        text = await r.text()
    assert sum(b.hits for b in backends) == hits, why
    assert text.endswith(f"{method} {size}")  # the whole body reached the backend


async def test_post_is_retried_after_connection_refused(lab, client):
    (live,) = await lab.start_backends(1)
    refused = f"127.0.0.1:{closed_port()}"
    sc = await lab.start_sidecar(
        [refused, live.address],
        retries={"backoff": {"base": "1ms", "max": "2ms"}},
        **ONLY_RETRIES,
    )
    attempts = []
    async with asyncio.timeout(10):
        for i in range(4):
            async with client.post(api(sc), data=f"order-{i}".encode()) as r:
                assert r.status == 200
                attempts.append(r.headers["x-pilotfish-attempts"])
    # Round robin sends at least every other POST to the closed port first.
    assert attempts.count("2") >= 2
    assert set(attempts) <= {"1", "2"}
    assert [r["method"] for r in live.requests] == ["POST"] * 4
