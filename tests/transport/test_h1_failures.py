"""Failures map to ConnectFailure / UpstreamReset; a failed or cancelled exchange is dropped."""

from __future__ import annotations

import asyncio
import socket

import pytest

from discovery.model import Endpoint
from sidecar.pipeline.errors import ConnectFailure, UpstreamReset
from sidecar.transport.h1_client import H1Response, H1Transport
from sidecar.transport.request_head import RequestHead
from tests.transport.servers import RawServer, read_request, response, wait_for_eof


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_refused_connect_is_a_connect_failure(transport: H1Transport) -> None:
    with pytest.raises(ConnectFailure, match=r"cannot connect to 127\.0\.0\.1"):
        await transport.send(Endpoint("127.0.0.1", unused_port()), RequestHead.of("GET", "/"), None)


async def test_connect_that_takes_too_long_is_a_connect_failure() -> None:
    # A listener whose accept queue is full drops further SYNs: the handshake hangs.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    port = listener.getsockname()[1]
    transport = H1Transport(connect_timeout=0.2, idle_timeout=5)
    try:
        for _ in range(4):  # enough to fill the queue whatever the kernel adds to backlog 0
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        with pytest.raises(ConnectFailure, match="timed out"):
            await transport.send(Endpoint("127.0.0.1", port), RequestHead.of("GET", "/"), None)
    finally:
        await transport.close()
        for filler in fillers:
            filler.close()
        listener.close()


async def read_body(resp: H1Response, how: str, got: list[bytes]) -> None:
    """Read ``resp``'s body whole (``read``) or chunk by chunk into ``got``."""
    if how == "read":
        await resp.read()
        return
    async for chunk in resp.iter_chunks():
        got.append(chunk)


@pytest.mark.parametrize(
    "partial",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n",
    ],
    ids=["content-length", "chunked"],
)
@pytest.mark.parametrize("how", ["read", "iter_chunks"])
async def test_server_closing_mid_body_is_an_upstream_reset(
    transport: H1Transport, partial: bytes, how: str
) -> None:
    async def script(reader, writer, index):
        await read_request(reader)
        writer.write(partial)
        await writer.drain()

    async with RawServer(script) as endpoint:
        resp = await transport.send(endpoint, RequestHead.of("GET", "/"), None)
        assert resp.status == 200
        got: list[bytes] = []
        with pytest.raises(UpstreamReset, match="before the end of the body"):
            await read_body(resp, how, got)
        if how == "iter_chunks":
            assert b"".join(got) == b"0123456789"  # what arrived is delivered first
        assert transport.pool(endpoint).open_count == 0


async def test_server_closing_before_answering_is_an_upstream_reset(
    transport: H1Transport,
) -> None:
    async def script(reader, writer, index):
        await read_request(reader)

    async with RawServer(script) as endpoint:
        with pytest.raises(UpstreamReset, match="before answering"):
            await transport.send(endpoint, RequestHead.of("GET", "/"), b"")


@pytest.mark.parametrize(
    "garbage",
    [
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.2\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        b"HTTP/1.1 800 Continue\r\nContent-Length: 0\r\n\r\n",
    ],
    ids=["status", "not-http", "length", "chunk-size", "upgrade", "status-beyond-599"],
)
async def test_invalid_response_is_an_upstream_reset(
    transport: H1Transport, garbage: bytes
) -> None:
    async def script(reader, writer, index):
        await read_request(reader)
        writer.write(garbage)
        await wait_for_eof(reader)

    async with RawServer(script) as endpoint:
        try:
            resp = await transport.send(endpoint, RequestHead.of("GET", "/"), None)
            with pytest.raises(UpstreamReset, match="invalid response"):
                await resp.read()
        except UpstreamReset as exc:
            assert "invalid response" in str(exc)
        assert transport.pool(endpoint).open_count == 0


def counting_server(answer_first: bytes):
    """Connection 0 sends ``answer_first`` and holds; others answer normally. The queue
    ``closed_by_peer`` reports a client closing connection 0."""

    async def script(reader, writer, index):
        while True:
            head, _ = await read_request(reader)
            if not head:
                break
            if index == 0:
                writer.write(answer_first)
                await wait_for_eof(reader)
                break
            writer.write(response("200 OK", b"fresh"))
        server.closed_by_peer.put_nowait(index)

    server = RawServer(script)
    return server


async def test_cancelled_read_mid_body_drops_the_connection(transport: H1Transport) -> None:
    server = counting_server(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf")
    async with server as endpoint:
        resp = await transport.send(endpoint, RequestHead.of("GET", "/"), None)
        first = asyncio.Event()

        async def consume() -> None:
            async for _ in resp.iter_chunks():
                first.set()

        task = asyncio.create_task(consume())
        await first.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await asyncio.wait_for(server.closed_by_peer.get(), 2) == 0
        resp.release()  # a release after the cancel must not pool it either
        resp = await transport.send(endpoint, RequestHead.of("GET", "/"), None)
        assert await resp.read() == b"fresh"
        resp.release()
    assert server.connections == 2


async def test_timeout_waiting_for_headers_drops_the_connection(transport: H1Transport) -> None:
    server = counting_server(b"")  # never answers connection 0
    async with server as endpoint:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await transport.send(endpoint, RequestHead.of("GET", "/"), None)
        assert await asyncio.wait_for(server.closed_by_peer.get(), 2) == 0
        resp = await transport.send(endpoint, RequestHead.of("GET", "/"), None)
        assert await resp.read() == b"fresh"
        resp.release()
    assert server.connections == 2


async def test_release_before_the_end_of_the_body_drops_the_connection(
    transport: H1Transport,
) -> None:
    server = counting_server(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf")
    async with server as endpoint:
        resp = await transport.send(endpoint, RequestHead.of("GET", "/"), None)
        resp.release()
        assert await asyncio.wait_for(server.closed_by_peer.get(), 2) == 0
        assert transport.pool(endpoint).idle_count == 0


async def test_bytes_out_of_turn_on_an_idle_connection_drop_it(transport: H1Transport) -> None:
    async def script(reader, writer, index):
        await read_request(reader)
        writer.write(response("200 OK", b"ok") + b"HTTP/1.1 200 OK\r\n")  # one too many
        await wait_for_eof(reader)
        server.closed_by_peer.put_nowait(index)

    server = RawServer(script)
    async with server as endpoint:
        resp = await transport.send(endpoint, RequestHead.of("GET", "/"), None)
        assert await resp.read() == b"ok"
        resp.release()
        assert await asyncio.wait_for(server.closed_by_peer.get(), 2) == 0
        assert transport.pool(endpoint).idle_count == 0


@pytest.mark.parametrize("how", ["read", "iter_chunks"])
async def test_a_body_that_stops_arriving_fails_after_the_stream_idle_timeout(how: str) -> None:
    release = asyncio.Event()

    async def script(reader, writer, index):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst")
        await writer.drain()
        await release.wait()  # the rest never comes while the client waits

    transport = H1Transport(connect_timeout=1.0, idle_timeout=5.0, stream_idle_timeout=0.2)
    try:
        async with RawServer(script) as endpoint:
            resp = await transport.send(endpoint, RequestHead.of("GET", "/"), None)
            got: list[bytes] = []
            async with asyncio.timeout(5):  # bounds the test, far above the idle timeout
                with pytest.raises(UpstreamReset, match=r"sent no body bytes for 0\.2s"):
                    await read_body(resp, how, got)
            if how == "iter_chunks":
                assert got == [b"first"]  # what arrived is delivered first
            assert transport.pool(endpoint).open_count == 0
            release.set()
    finally:
        await transport.close()


async def test_a_slow_but_steady_body_is_not_cut_by_the_stream_idle_timeout() -> None:
    async def script(reader, writer, index):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n")
        for part in (b"ab", b"cd", b"ef"):  # 0.3 s in all, each gap well under 0.5 s
            await asyncio.sleep(0.1)  # the server's pace is what is tested
            writer.write(part)
            await writer.drain()

    transport = H1Transport(connect_timeout=1.0, idle_timeout=5.0, stream_idle_timeout=0.5)
    try:
        async with RawServer(script) as endpoint:
            resp = await transport.send(endpoint, RequestHead.of("GET", "/"), None)
            assert await resp.read() == b"abcdef"
            resp.release()
    finally:
        await transport.close()
