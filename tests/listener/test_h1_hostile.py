"""The listener against clients that break the rules: refusals that never reach the handler,
pipelines answered up to the bad request, bounds enforced while bytes stream in, timers
that fire on time, and a cap on connections."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest
from multidict import CIMultiDict

from sidecar.listener.h1_server import MAX_FIELD, H1Connection, H1Server
from sidecar.listener.head_rules import Refusal
from sidecar.listener.request import DownstreamRequest
from sidecar.listener.request_parser import FEED_SLICE
from sidecar.pipeline.errors import ProxyError


class Recorder:
    """A handler that answers each request with what it saw, and keeps a list of them."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str, bytes]] = []

    async def __call__(self, request: DownstreamRequest, out: H1Connection) -> None:
        try:
            body = await request.read()
        except ProxyError as exc:
            out.keep_alive = False
            await out.send(exc.status, CIMultiDict({"x-pilotfish-error": exc.reason}), b"")
            return
        host = request.headers.get("Host", "")
        self.seen.append((request.method, request.raw_path, host, body))
        await out.send(
            200,
            CIMultiDict(),
            b"%s %s %d" % (request.method.encode(), request.raw_path.encode(), len(body)),
        )


@pytest.fixture
async def served() -> AsyncIterator[tuple[H1Server, int, Recorder, list[Refusal]]]:
    recorder = Recorder()
    refusals: list[Refusal] = []
    srv = H1Server(recorder, name="test", on_refused=lambda name, r: refusals.append(r))
    _, port = await srv.start("127.0.0.1", 0)
    yield srv, port, recorder, refusals
    await srv.stop(1.0)


async def exchange(port: int, *parts: bytes | float) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for part in parts:
        if isinstance(part, float):
            await asyncio.sleep(part)  # the client's own pacing, not a wait for the server
            continue
        writer.write(part)
        await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


def statuses(data: bytes) -> list[int]:
    return [int(s) for s in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]


async def test_pipelined_requests_are_answered_in_order_up_to_the_bad_one(served):
    _, port, recorder, refusals = served
    data = await exchange(
        port,
        b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"
        b"GARBAGE\r\n\r\n"
        b"GET /never HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    assert statuses(data) == [200, 200, 400]
    assert data.endswith(b"\n") and b"Connection: close" in data.split(b"HTTP/1.1 400")[1]
    assert [(m, p) for m, p, _, _ in recorder.seen] == [("GET", "/1"), ("POST", "/2")]
    assert [r.status for r in refusals] == [400]


async def test_a_request_whose_body_breaks_its_framing_never_reaches_the_handler(served):
    _, port, recorder, _ = served
    data = await exchange(
        port,
        b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /broken HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\nzz\r\n",
    )
    assert statuses(data) == [200, 400]
    assert [p for _, p, _, _ in recorder.seen] == ["/ok"]


async def test_a_body_that_breaks_while_its_request_is_served_fails_its_reader(served):
    _, port, recorder, _ = served
    data = await exchange(
        port,
        b"POST /late HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        0.1,  # the handler is reading by now
        b"zz\r\n",
    )
    # Answered once: by the handler, from its reader's BadRequest; then the connection closes.
    assert statuses(data) == [400]
    assert b"x-pilotfish-error: bad_request" in data
    assert recorder.seen == []


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: y\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        (b"GET / RTSP/1.0\r\nHost: a\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 501),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"GET https://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ],
)
async def test_head_rules_refuse_before_the_handler(served, raw, status):
    _, port, recorder, refusals = served
    data = await exchange(port, raw)
    assert statuses(data) == [status]
    assert b"Connection: close" in data
    assert recorder.seen == []
    assert [r.status for r in refusals] == [status]


async def test_an_absolute_form_target_is_taken_apart_and_its_authority_replaces_host(served):
    _, port, recorder, _ = served
    data = await exchange(
        port, b"GET http://payments:8080/x?y=1 HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n"
    )
    assert statuses(data) == [200]
    assert recorder.seen == [("GET", "/x?y=1", "payments:8080", b"")]


async def test_an_upgrade_other_than_websocket_is_served_as_http11_body_and_all(served):
    _, port, recorder, _ = served
    data = await exchange(
        port,
        b"POST /up HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /next HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    assert statuses(data) == [200, 200]
    assert [(p, b) for _, p, _, b in recorder.seen] == [("/up", b"hello"), ("/next", b"")]


async def test_a_chunked_body_behind_an_ignored_upgrade_is_read_too(served):
    _, port, recorder, _ = served
    data = await exchange(
        port,
        b"POST /up HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
        0.05,
        b"2\r\nde\r\n0\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    assert statuses(data) == [200, 200]
    assert [(p, b) for _, p, _, b in recorder.seen] == [("/up", b"abcde"), ("/next", b"")]


async def test_an_endless_header_line_is_refused_once_it_crosses_the_field_limit(served):
    _, port, recorder, _ = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: ")
    piece = b"a" * 1024
    sent = 0
    answer = b""
    async with asyncio.timeout(5):
        while not answer:
            try:
                writer.write(piece)
                await writer.drain()
            except ConnectionError:
                break
            sent += len(piece)
            try:
                answer = await asyncio.wait_for(reader.read(65536), 0.005)
            except TimeoutError:
                continue
        answer += await reader.read()
    writer.close()
    assert statuses(answer) == [431]
    # Refused within a read or two of the limit, not after the whole line.
    assert MAX_FIELD <= sent < MAX_FIELD + 300 * 1024
    assert recorder.seen == []


async def test_a_request_head_that_trickles_in_is_cut_at_its_head_timeout():
    recorder = Recorder()
    srv = H1Server(recorder, keepalive_timeout=30.0, head_timeout=0.5)
    _, port = await srv.start("127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # A kept-alive connection: one request served, then a head that never ends.
        writer.write(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n")
        await reader.readuntil(b"GET /first 0")
        began = loop.time()
        writer.write(b"G")
        answer = b""

        async def trickle() -> None:
            for byte in b"ET / HTTP/1.1\r\nHost: a\r\nX: " + b"y" * 100:
                await asyncio.sleep(0.05)  # the client's pace: one byte every 50 ms
                writer.write(bytes([byte]))

        dripping = asyncio.create_task(trickle())
        answer = await asyncio.wait_for(reader.read(), 5)
        took = loop.time() - began
        dripping.cancel()
        writer.close()
        assert statuses(answer) == [408]
        assert 0.5 <= took < 0.75, took
    finally:
        await srv.stop(1.0)


async def test_connections_beyond_the_cap_are_closed_at_once_and_counted():
    overflowed: list[str] = []
    srv = H1Server(Recorder(), name="capped", max_connections=2, on_overflow=overflowed.append)
    _, port = await srv.start("127.0.0.1", 0)
    try:
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        for reader, writer in held:  # both served and kept open
            writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            await reader.readuntil(b"GET / 0")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed on accept
        writer.close()
        assert overflowed == ["capped"]
        assert srv.overflows == 1
        held[0][1].close()
        await asyncio.wait_for(held[0][0].read(), 5)
        async with asyncio.timeout(5):
            while len(srv.connections) > 1:
                await asyncio.sleep(0.005)  # the server sees the close on its next loop turn
        answer = await exchange(port, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert statuses(answer) == [200]
        held[1][1].close()
    finally:
        await srv.stop(1.0)


async def test_a_client_that_stops_reading_is_cut_at_the_send_timeout():
    gone = asyncio.Event()

    async def flood(request: DownstreamRequest, out: H1Connection) -> None:
        await out.start(200, CIMultiDict())
        block = b"x" * 65536
        try:
            while True:
                await out.write(block)
        except ConnectionResetError:
            gone.set()
            raise

    srv = H1Server(flood, send_timeout=0.3)
    _, port = await srv.start("127.0.0.1", 0)
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.transport.pause_reading()  # never read: the server's writes back up
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        await asyncio.wait_for(gone.wait(), 5)
        writer.close()
    finally:
        await srv.stop(1.0)


class FakeTransport(asyncio.Transport):
    """Just enough of a socket transport to drive an ``H1Connection`` by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.reading = True
        self.written = b""
        self.closed = False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 1) if name == "peername" else default

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


async def test_a_huge_read_is_parsed_a_slice_per_loop_turn_with_reading_paused():
    recorder = Recorder()
    srv = H1Server(recorder)
    conn = H1Connection(srv)
    transport = FakeTransport()
    conn.connection_made(transport)
    chunks = b"1\r\na\r\n" * 200_000 + b"0\r\n\r\n"  # 1.2 MB of one-byte chunks
    conn.data_received(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks)
    # One slice parsed, the rest waits for the next loop turns; the socket is not read meanwhile.
    assert not transport.reading
    (request,) = conn.queue
    assert request.content.total_bytes <= FEED_SLICE // 6
    turns = 0
    async with asyncio.timeout(5):
        while not request.content.at_eof and turns < 1000:
            await asyncio.sleep(0)
            turns += 1
    assert turns >= len(chunks) // FEED_SLICE
    assert transport.reading
    assert recorder.seen[0][3] == b"a" * 200_000
    conn.connection_lost(None)
