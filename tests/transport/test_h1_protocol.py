"""H1Connection fed bytes directly, against a recording transport: no sockets, no waiting."""

from __future__ import annotations

import asyncio

from sidecar.transport.h1_protocol import READ_HIGH, H1Connection


class RecordingTransport:
    def __init__(self) -> None:
        self.reading = True
        self.closing = False

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        self.closing = True

    abort = close


class NoPool:
    label = "127.0.0.1:1"

    def discard(self, conn: H1Connection) -> None:
        pass


def connection() -> tuple[H1Connection, RecordingTransport]:
    conn = H1Connection(NoPool(), asyncio.get_running_loop())  # type: ignore[arg-type]
    transport = RecordingTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport


def begin(conn: H1Connection, *, head: bool = False) -> None:
    conn.begin(head)
    conn.request_sent = True  # as the client marks it once the request is written


def answer(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body


async def test_reading_pauses_above_the_high_mark_and_resumes_once_taken() -> None:
    conn, transport = connection()
    begin(conn)
    conn.data_received(answer(b"a" * (READ_HIGH + 1) + b"tail")[:-4])
    assert not transport.reading
    assert len(await conn.next_chunk()) == READ_HIGH + 1
    assert transport.reading
    conn.data_received(b"tail")
    assert await conn.next_chunk() == b"tail"
    assert await conn.next_chunk() == b""


async def test_a_body_received_whole_but_left_unread_leaves_the_connection_reading() -> None:
    conn, transport = connection()
    begin(conn)
    conn.data_received(answer(b"b" * (2 * READ_HIGH)))
    assert not transport.reading and conn.reusable
    conn.finish()
    assert transport.reading
    begin(conn)
    conn.data_received(answer(b"next"))
    assert await conn.next_chunk() == b"next"


async def test_after_a_head_answer_the_next_answer_parses_from_its_first_byte() -> None:
    conn, _ = connection()
    begin(conn, head=True)
    conn.data_received(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert conn.reusable and conn.content_length is None
    assert await conn.next_chunk() == b""
    conn.finish()
    begin(conn)
    conn.data_received(answer(b"body"))
    assert (conn.status, await conn.next_chunk()) == (200, b"body")
