"""The proxy listeners' HTTP/1.1 server on raw sockets: framing, limits, keep-alive."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest
from multidict import CIMultiDict

from sidecar.listener.body import BodyTimeout
from sidecar.listener.h1_server import H1Connection, H1Server
from sidecar.listener.request import DownstreamRequest


async def echo(request: DownstreamRequest, out: H1Connection) -> None:
    body = await request.read()
    if request.raw_path == "/stream":
        await out.start(200, CIMultiDict({"x-kind": "stream"}))
        for part in (b"ab", b"cd", b"ef"):
            await out.write(part)
        await out.finish()
        return
    if request.raw_path == "/ignore-body":
        await out.send(200, CIMultiDict(), b"ignored")
        return
    version = f"{request.version.major}.{request.version.minor}"
    text = f"{request.method} {request.raw_path} {version} {len(body)}"
    await out.send(
        200, CIMultiDict({"x-seen-host": request.headers.get("Host", "")}), text.encode()
    )


@pytest.fixture
async def server() -> AsyncIterator[tuple[H1Server, int]]:
    srv = H1Server(echo)
    _, port = await srv.start("127.0.0.1", 0)
    yield srv, port
    await srv.stop(1.0)


async def exchange(port: int, raw: bytes, *, until_close: bool = True) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await asyncio.wait_for(reader.read() if until_close else reader.read(65536), 5)
    writer.close()
    return data


async def test_keep_alive_and_pipelined_requests_are_answered_in_order(server):
    _, port = server
    raw = (
        b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /three HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    data = await exchange(port, raw)
    bodies = [part.split(b"\r\n\r\n", 1)[1] for part in data.split(b"HTTP/1.1 200 OK")[1:]]
    assert [b[:20] for b in bodies] == [b"GET /one 1.1 0", b"POST /two 1.1 5", b"GET /three 1.1 0"]
    assert data.count(b"Connection: close") == 1


async def test_chunked_request_and_streamed_chunked_response(server):
    _, port = server
    data = await exchange(
        port,
        b"POST /stream HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    head, body = data.split(b"\r\n\r\n", 1)
    assert b"Transfer-Encoding: chunked" in head
    assert body == b"2\r\nab\r\n2\r\ncd\r\n2\r\nef\r\n0\r\n\r\n"


async def test_http10_streamed_response_is_close_delimited(server):
    _, port = server
    data = await exchange(port, b"GET /stream HTTP/1.0\r\n\r\n")
    head, body = data.split(b"\r\n\r\n", 1)
    assert b"chunked" not in head and b"Connection: close" in head
    assert body == b"abcdef"


@pytest.mark.parametrize(
    "raw",
    [
        # Request smuggling shapes: both framings, conflicting lengths, bad chunk sizes.
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n",
        b"NOT A REQUEST\r\n\r\n",
    ],
)
async def test_malformed_framing_is_refused_with_400_and_the_connection_closed(server, raw):
    _, port = server
    data = await exchange(port, raw)
    assert data.startswith(b"HTTP/1.1 400 "), data[:60]
    assert b"Connection: close" in data
    assert data.count(b"HTTP/1.1") == 1  # nothing after the refusal was served


async def test_header_and_url_limits(server):
    _, port = server
    many = b"".join(b"x-h%d: v\r\n" % i for i in range(150))
    refused = await exchange(port, b"GET / HTTP/1.1\r\n" + many + b"\r\n")
    assert refused.startswith(b"HTTP/1.1 431 ")
    assert re.search(rb"\r\nDate: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT\r\n", refused)
    long_url = b"/" + b"a" * 9000
    assert (await exchange(port, b"GET " + long_url + b" HTTP/1.1\r\n\r\n")).startswith(
        b"HTTP/1.1 414 "
    )


async def test_expect_100_continue_is_answered_when_the_body_is_read(server):
    _, port = server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n"
        b"Connection: close\r\n\r\n"
    )
    await writer.drain()
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"data")
    rest = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert rest.startswith(b"HTTP/1.1 200 OK") and rest.endswith(b"POST /up 1.1 4")


async def test_an_unread_small_body_is_drained_and_the_connection_kept(server):
    _, port = server
    raw = (
        b"POST /ignore-body HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789"
        b"GET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    data = await exchange(port, raw)
    assert data.count(b"HTTP/1.1 200 OK") == 2 and data.endswith(b"GET /after 1.1 0")


async def test_graceful_stop_finishes_the_request_in_flight():
    release = asyncio.Event()
    entered = asyncio.Event()

    async def slow(request: DownstreamRequest, out: H1Connection) -> None:
        entered.set()
        await release.wait()
        await out.send(200, CIMultiDict(), b"done")

    srv = H1Server(slow)
    _, port = await srv.start("127.0.0.1", 0)
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    await writer.drain()
    await asyncio.wait_for(entered.wait(), 5)
    stopping = asyncio.create_task(srv.stop(5.0))
    assert await asyncio.wait_for(idle_reader.read(), 5) == b""  # idle connection closed
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)  # no longer accepting
    release.set()
    answer = await asyncio.wait_for(reader.read(), 5)
    assert answer.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in answer
    assert answer.endswith(b"done")
    await asyncio.wait_for(stopping, 5)
    writer.close()
    idle_writer.close()


async def test_client_disconnect_cancels_the_handler():
    cancelled = asyncio.Event()
    entered = asyncio.Event()

    async def hang(request: DownstreamRequest, out: H1Connection) -> None:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    srv = H1Server(hang)
    _, port = await srv.start("127.0.0.1", 0)
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    await writer.drain()
    await asyncio.wait_for(entered.wait(), 5)
    writer.close()
    await asyncio.wait_for(cancelled.wait(), 5)
    await srv.stop(1.0)


async def test_idle_keep_alive_connections_close_but_busy_ones_do_not():
    release = asyncio.Event()

    async def maybe_slow(request: DownstreamRequest, out: H1Connection) -> None:
        if request.raw_path == "/slow":
            await release.wait()
        await out.send(200, CIMultiDict(), b"ok")

    srv = H1Server(maybe_slow, keepalive_timeout=0.2)
    _, port = await srv.start("127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    await reader.readuntil(b"ok")
    answered = loop.time()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed once idle long enough
    assert loop.time() - answered >= 0.15
    busy_reader, busy_writer = await asyncio.open_connection("127.0.0.1", port)
    busy_writer.write(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
    await busy_writer.drain()
    # Longer than the idle timeout, but the connection is busy: it must stay open.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(busy_reader.read(1), 0.5)
    release.set()
    assert (await asyncio.wait_for(busy_reader.readuntil(b"ok"), 5)).startswith(b"HTTP/1.1 200")
    writer.close()
    busy_writer.close()
    await srv.stop(1.0)


async def test_a_request_head_that_stalls_gets_408_and_the_connection_closes():
    async def ok(request: DownstreamRequest, out: H1Connection) -> None:
        await out.send(200, CIMultiDict(), b"ok")

    srv = H1Server(ok, keepalive_timeout=0.2, head_timeout=0.3)
    _, port = await srv.start("127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n")  # the blank line never comes
        await writer.drain()
        began = loop.time()
        answer = await asyncio.wait_for(reader.read(), 5)  # to the server's close
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert b"x-pilotfish-error: request_timeout" in answer
        assert loop.time() - began >= 0.25
        writer.close()
        # A head that completes in time is served as usual.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 200 ")
        writer.close()
    finally:
        await srv.stop(1.0)


async def test_a_request_body_that_stops_arriving_fails_its_reader():
    outcome: list[str] = []

    async def reads(request: DownstreamRequest, out: H1Connection) -> None:
        try:
            await request.read()
            outcome.append("read")
        except BodyTimeout as exc:
            outcome.append(str(exc))
            out.keep_alive = False
            await out.send(408, CIMultiDict(), b"too slow")

    srv = H1Server(reads, body_timeout=0.2)
    _, port = await srv.start("127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        answer = await asyncio.wait_for(reader.read(), 5)  # to the server's close
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert outcome == ["no request body bytes for 0.2s"]
        writer.close()
    finally:
        await srv.stop(1.0)


async def test_a_fault_of_the_server_while_reading_a_head_is_a_500_not_the_clients_400(
    server, monkeypatch, caplog
):
    _, port = server

    def broken(self: H1Connection) -> None:
        raise RuntimeError("a bug of ours")

    # Bound when the parser is made, so it applies to connections made from here on.
    monkeypatch.setattr(H1Connection, "on_headers_complete", broken)
    data = await exchange(port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 500 ")
    assert b"x-pilotfish-error: internal" in data
    assert b"Connection: close" in data
    (record,) = [r for r in caplog.records if r.name == "pilotfish.listener"]
    assert record.getMessage() == "unhandled error while reading a request"
    assert record.exc_info is not None and "a bug of ours" in str(record.exc_info[1])
    # A malformed request is still the client's: 400, and nothing logged as an error.
    monkeypatch.undo()
    caplog.clear()
    data = await exchange(port, b"GET / HTTP/1.1\r\nHost a\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 400 ")
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
