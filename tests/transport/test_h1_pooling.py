"""Keep-alive reuse, idle expiry, stale pooled connections and concurrency of H1Transport."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from sidecar.pipeline.errors import UpstreamReset
from sidecar.transport.h1_client import H1Transport
from sidecar.transport.request_head import RequestHead
from tests.transport.servers import (
    Peers,
    RawServer,
    aiohttp_app,
    read_request,
    response,
)


async def get(
    transport: H1Transport, endpoint, path: str = "/", body=None, method: str = "GET"
) -> tuple[int, bytes]:
    resp = await transport.send(endpoint, RequestHead.of(method, path), body)
    data = await resp.read()
    resp.release()
    return resp.status, data


async def test_twenty_sequential_requests_share_one_connection(transport: H1Transport) -> None:
    peers = Peers()

    async def handler(request: web.Request) -> web.Response:
        peers.note(request)
        return web.Response(text=request.path)

    async with aiohttp_app(handler) as endpoint:
        for i in range(20):
            assert await get(transport, endpoint, f"/{i}") == (200, f"/{i}".encode())
    assert len(peers.ports) == 1


async def test_a_connection_idle_past_the_timeout_is_closed_and_not_reused() -> None:
    async def script(reader, writer, index):
        while (await read_request(reader))[0]:
            writer.write(response("200 OK", b"%d" % index))
        server.closed_by_peer.put_nowait(index)

    transport = H1Transport(connect_timeout=1.0, idle_timeout=0.05)
    server = RawServer(script)
    try:
        async with server as endpoint:
            assert await get(transport, endpoint) == (200, b"0")
            assert await get(transport, endpoint) == (200, b"0")  # well inside the timeout
            # The pool's timer closes the idle connection: the server sees the client leave.
            assert await asyncio.wait_for(server.closed_by_peer.get(), 2) == 0
            assert await get(transport, endpoint) == (200, b"1")
    finally:
        await transport.close()


async def test_checkout_never_hands_out_a_connection_idle_past_the_timeout() -> None:
    async def script(reader, writer, index):
        while (await read_request(reader))[0]:
            writer.write(response("200 OK", b"%d" % index))

    transport = H1Transport(connect_timeout=1.0, idle_timeout=30.0)
    try:
        async with RawServer(script) as endpoint:
            assert await get(transport, endpoint) == (200, b"0")
            pool = transport.pool(endpoint)
            (conn,) = pool.idle_connections()
            conn.idle_since -= 30.0  # as if the expiry timer had not run yet
            assert await get(transport, endpoint) == (200, b"1")
    finally:
        await transport.close()


async def test_idle_timeout_zero_pools_nothing() -> None:
    async def script(reader, writer, index):
        while (await read_request(reader))[0]:
            writer.write(response("200 OK", b"%d" % index))

    transport = H1Transport(connect_timeout=1.0, idle_timeout=0)
    try:
        async with RawServer(script) as endpoint:
            assert [await get(transport, endpoint) for _ in range(3)] == [
                (200, b"0"),
                (200, b"1"),
                (200, b"2"),
            ]
    finally:
        await transport.close()


def closes_second_request_unanswered(server_log: list[bytes]):
    """Connection 0 answers once, then closes on the next request as if it had timed out
    at that very moment; later connections answer everything."""

    async def script(reader, writer, index):
        while True:
            head, body = await read_request(reader)
            if not head:
                return
            server_log.append(body)
            if index == 0 and len(server_log) > 1:
                return  # closed without a byte of answer
            writer.write(response("200 OK", b"%d:%s" % (index, body)))

    return script


async def test_a_stale_pooled_connection_is_retried_once_for_a_replayable_body(
    transport: H1Transport,
) -> None:
    log: list[bytes] = []
    server = RawServer(closes_second_request_unanswered(log))
    async with server as endpoint:
        assert await get(transport, endpoint, body=b"one", method="POST") == (200, b"0:one")
        assert await get(transport, endpoint, body=b"two", method="POST") == (200, b"1:two")
    assert log == [b"one", b"two", b"two"]
    assert server.connections == 2


async def stream(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_a_stale_pooled_connection_fails_a_streamed_body(transport: H1Transport) -> None:
    # The stream was consumed by the first try: it cannot be sent again.
    log: list[bytes] = []
    server = RawServer(closes_second_request_unanswered(log))
    async with server as endpoint:
        assert await get(transport, endpoint, body=b"one", method="POST") == (200, b"0:one")
        with pytest.raises(UpstreamReset):
            await transport.send(endpoint, RequestHead.of("POST", "/"), stream(b"tw", b"o"))
    assert server.connections == 1


async def test_an_idle_connection_the_server_closed_leaves_the_pool(
    transport: H1Transport,
) -> None:
    async def script(reader, writer, index):
        await read_request(reader)
        writer.write(response("200 OK", b"%d" % index))
        if index == 0:
            await writer.drain()
            writer.close()  # closes while the connection sits idle in the pool
            return
        while (await read_request(reader))[0]:
            writer.write(response("200 OK", b"%d" % index))

    async with RawServer(script) as endpoint:
        assert await get(transport, endpoint) == (200, b"0")
        pool = transport.pool(endpoint)
        (conn,) = pool.idle_connections()
        while not conn.closed:  # the client notices the server's FIN
            await asyncio.sleep(0.001)
        assert pool.idle_count == 0
        # Nothing was sent on the dead connection, so even a streamed body goes through.
        resp = await transport.send(endpoint, RequestHead.of("POST", "/"), stream(b"x"))
        assert (resp.status, await resp.read()) == (200, b"1")
        resp.release()


@pytest.mark.parametrize(
    ("answer", "pooled"),
    [
        (response("200 OK", b"ok"), True),
        (response("200 OK", b"ok", "Connection: close"), False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok", True),
    ],
)
async def test_only_keep_alive_answers_are_pooled(
    transport: H1Transport, answer: bytes, pooled: bool
) -> None:
    async def script(reader, writer, index):
        while (await read_request(reader))[0]:
            writer.write(answer)

    server = RawServer(script)
    async with server as endpoint:
        assert await get(transport, endpoint) == (200, b"ok")
        assert transport.pool(endpoint).idle_count == (1 if pooled else 0)
        assert await get(transport, endpoint) == (200, b"ok")
    assert server.connections == (1 if pooled else 2)


async def test_fifty_concurrent_requests_open_at_most_fifty_connections(
    transport: H1Transport,
) -> None:
    peers = Peers()
    arrived = 0
    all_in = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        nonlocal arrived
        peers.note(request)
        arrived += 1
        if arrived == 50:
            all_in.set()
        await all_in.wait()  # all 50 are in flight at once
        return web.Response(text=request.path)

    async with aiohttp_app(handler) as endpoint:
        paths = [f"/{i}" for i in range(50)]
        results = await asyncio.gather(*(get(transport, endpoint, p) for p in paths))
        assert results == [(200, p.encode()) for p in paths]
        assert len(peers.ports) == 50
        assert transport.pool(endpoint).idle_count == 50
        # A second wave reuses them.
        results = await asyncio.gather(*(get(transport, endpoint, p) for p in paths))
        assert results == [(200, p.encode()) for p in paths]
        assert len(peers.ports) <= 50
