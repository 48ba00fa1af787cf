"""max_connections per endpoint and the cluster's pending queue (max_pending)."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from discovery.model import Endpoint
from sidecar.pipeline.errors import Overflow
from sidecar.transport.h1_client import H1Transport
from sidecar.transport.request_head import RequestHead


@pytest.fixture
async def gated():
    """A backend whose answers wait until the test opens the gate."""
    gate = asyncio.Event()
    arrived: list[str] = []
    peers: set[object] = set()

    async def handle(request: web.Request) -> web.Response:
        arrived.append(request.path)
        peers.add(request.transport.get_extra_info("peername"))
        await gate.wait()
        return web.Response(text=request.path)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield Endpoint("127.0.0.1", port), gate, arrived, peers
    gate.set()
    await runner.cleanup()


async def _get(transport: H1Transport, endpoint: Endpoint, path: str) -> str:
    resp = await transport.send(endpoint, RequestHead.of("GET", path), None)
    body = await resp.read()
    resp.release()
    return body.decode()


async def _until(condition, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)  # polling state the server's handlers change


async def test_requests_wait_for_a_busy_connection_then_overflow_past_max_pending(gated):
    endpoint, gate, arrived, peers = gated
    transport = H1Transport(connect_timeout=1, idle_timeout=4, max_connections=2, max_pending=2)
    try:
        first = [asyncio.create_task(_get(transport, endpoint, f"/a{i}")) for i in range(2)]
        await _until(lambda: len(arrived) == 2)
        waiting = [asyncio.create_task(_get(transport, endpoint, f"/w{i}")) for i in range(2)]
        await _until(lambda: transport.pool(endpoint).waiting == 2)
        with pytest.raises(Overflow):  # a third waiter is refused at once
            await _get(transport, endpoint, "/refused")
        assert transport.pool(endpoint).open_count == 2
        gate.set()
        results = await asyncio.wait_for(asyncio.gather(*first, *waiting), 5)
        assert sorted(results) == ["/a0", "/a1", "/w0", "/w1"]
        assert len(peers) == 2  # the waiters were served on the same two connections
        assert "/refused" not in arrived
    finally:
        await transport.close()


async def test_a_cancelled_waiter_gives_its_place_back(gated):
    endpoint, gate, arrived, _ = gated
    transport = H1Transport(connect_timeout=1, idle_timeout=4, max_connections=1, max_pending=1)
    try:
        busy = asyncio.create_task(_get(transport, endpoint, "/busy"))
        await _until(lambda: len(arrived) == 1)
        waiter = asyncio.create_task(_get(transport, endpoint, "/gone"))
        await _until(lambda: transport.pool(endpoint).waiting == 1)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert transport.pool(endpoint).waiting == 0
        later = asyncio.create_task(_get(transport, endpoint, "/later"))  # place is free again
        await _until(lambda: transport.pool(endpoint).waiting == 1)
        gate.set()
        assert await asyncio.wait_for(busy, 5) == "/busy"
        assert await asyncio.wait_for(later, 5) == "/later"
        assert "/gone" not in arrived
    finally:
        await transport.close()
