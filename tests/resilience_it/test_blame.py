"""Who is to blame: a client's slowness is the client's, an endpoint's broken answer is the
endpoint's, and a client that leaves is charged to no one.

Every timer starts when the request is complete; an attempt is settled when its response
body ends. The endpoint's breaker and outlier counters are read after each scenario.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from sidecar.cluster import Cluster
from tests.resilience_it.support import api, cluster_of, wait_until

KiB = 1024


def untouched(cluster: Cluster, endpoint: str) -> bool:
    record = cluster.outlier.snapshot(endpoint) if cluster.outlier is not None else {}
    state = cluster.states[endpoint]
    breaker = state.breaker
    return (
        state.failures == 0
        and not record.get("ejected")
        and not any(v for k, v in record.items() if k.startswith("consecutive"))
        and (breaker is None or (breaker.state == "closed" and breaker.consecutive_failures == 0))
    )


def attempts_by_outcome(sidecar, outcome: str) -> float:
    children = sidecar.observer.metrics.attempts
    return sum(c.value for (_, _, o), c in children.items() if o == outcome)


async def test_slow_uploads_are_answered_and_cost_neither_the_endpoint_nor_other_clients(
    lab, client
):
    (backend,) = await lab.start_backends(1)
    sc = await lab.start_sidecar([backend.address])  # default timeouts: per try 1 s, total 15 s
    cluster = cluster_of(sc)

    async def slow_body(size: int) -> AsyncIterator[bytes]:
        for _ in range(size // (4 * KiB)):  # over 3 s: the client's own pace
            yield b"u" * (4 * KiB)
            await asyncio.sleep(3 / (size // (4 * KiB)))

    async def upload(size: int, chunked: bool) -> tuple[int, str]:
        headers = {} if chunked else {"Content-Length": str(size)}
        async with client.post(api(sc, "/up"), data=slow_body(size), headers=headers) as r:
            return r.status, await r.text()

    stop = asyncio.Event()

    async def steady_traffic() -> list[int]:
        statuses = []
        while not stop.is_set():
            async with client.get(api(sc, "/n")) as r:
                statuses.append(r.status)
            await asyncio.sleep(0.02)  # about 50 requests a second
        return statuses

    traffic = asyncio.create_task(steady_traffic())
    # 96 KiB streams (above max_replay_bytes), 48 KiB is buffered first; with and without a
    # Content-Length.
    shapes = [(96 * KiB, False), (96 * KiB, False), (96 * KiB, True), (48 * KiB, False),
              (48 * KiB, True)]  # fmt: skip
    async with asyncio.timeout(20):
        uploads = await asyncio.gather(*(upload(size, chunked) for size, chunked in shapes))
    stop.set()
    normal = await traffic
    for (status, text), (size, _) in zip(uploads, shapes, strict=True):
        assert status == 200 and text.endswith(f" {size}"), (status, text)
    assert len(normal) >= 100 and set(normal) == {200}
    assert untouched(cluster, backend.address)
    assert attempts_by_outcome(sc, "timeout") == 0


async def test_a_body_that_stops_arriving_is_408_and_never_the_endpoints(lab):
    (backend,) = await lab.start_backends(1)
    sc = await lab.start_sidecar(
        [backend.address], listener_settings={"timeouts": {"request_body_idle": "300ms"}}
    )
    cluster = cluster_of(sc)
    port = sc.address("upstream:api")[1]
    for length in (10 * KiB, 200 * KiB):  # buffered, then streamed
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % length)
        writer.write(b"x" * 1000)  # and then nothing
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
        assert b"x-pilotfish-error: request_timeout" in answer
    assert backend.hits <= 1  # only the streamed one can have been begun upstream
    assert untouched(cluster, backend.address)


def resets_mid_body(size: int) -> object:
    async def behaviour(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": str(size)})
        await resp.prepare(request)
        await resp.write(b"b" * 1000)
        assert request.transport is not None
        request.transport.abort()  # the rest of the body never comes
        return resp

    return behaviour


async def test_responses_reset_mid_body_are_the_endpoints_failures_and_eject_it(lab, client):
    good, bad = await lab.start_backends(2)
    sc = await lab.start_sidecar(
        [good.address, bad.address],
        outlier_detection={"consecutive_gateway_failure": 5, "base_ejection_time": "30s"},
        circuit_breakers={"endpoint": None},
    )
    cluster = cluster_of(sc)
    seen: list[str] = []
    async with asyncio.timeout(10):
        for size in (100 * KiB, 100 * KiB, 100 * KiB, 10 * KiB, 10 * KiB):  # streamed, read whole
            bad.behaviour = resets_mid_body(size)
            while True:
                try:
                    async with client.get(api(sc)) as r:
                        await r.read()
                        if r.headers.get("x-backend") == good.name:
                            continue  # the good one answered: next request
                        seen.append(f"{r.status}")
                except aiohttp.ClientPayloadError:
                    seen.append("cut")  # the head was sent on: cutting is the only signal
                break
    assert seen == ["cut", "cut", "cut", "502", "502"]
    assert cluster.outlier is not None and cluster.outlier.is_ejected(bad.address)
    assert attempts_by_outcome(sc, "reset") == 5


async def test_clients_leaving_mid_response_are_charged_to_no_one(lab):
    (backend,) = await lab.start_backends(1)
    sent = asyncio.Event()

    async def long_answer(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": str(10 * 1024 * KiB)})
        await resp.prepare(request)
        for _ in range(160):
            await resp.write(b"z" * (64 * KiB))
            sent.set()
            await asyncio.sleep(0.01)
        return resp

    backend.behaviour = long_answer
    sc = await lab.start_sidecar(
        [backend.address],
        outlier_detection={"consecutive_gateway_failure": 5, "consecutive_local_origin_failure": 5},
    )
    cluster = cluster_of(sc)
    port = sc.address("upstream:api")[1]
    for _ in range(5):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert re.match(rb"HTTP/1\.1 200 ", head)
        await reader.readexactly(64 * KiB)
        writer.transport.abort()  # gone mid-body
    await wait_until(
        lambda: attempts_by_outcome(sc, "cancelled") == 5, 5, "five cancelled attempts"
    )
    assert untouched(cluster, backend.address)
    assert cluster.states[backend.address].in_flight == 0
