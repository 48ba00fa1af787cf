"""One upstream HTTP/1.1 connection: an ``asyncio.Protocol`` fed to httptools' C parser.

A connection carries one exchange at a time (no pipelining). ``begin`` starts an exchange;
the response's status line and headers, then its body, are parsed as bytes arrive, and the
reader awaits ``wait_headers`` and ``next_chunk``.

Invariants:
- Body bytes wait in a small queue; above ``READ_HIGH`` buffered bytes the socket stops
  being read until the consumer takes them, so a large body stays in bounded memory.
  Writers await ``drain`` while the transport's write buffer is above its high-water mark.
- 1xx informational responses are skipped; the answer to HEAD has no body whatever its
  framing headers say (the parser cannot know the request method, so the exchange is
  finished here once the headers are in, and the parser is replaced before the next one).
- A body without Content-Length or chunked framing ends when the upstream closes.
- A final status beyond 599 makes the response invalid (the parser takes any 3 digits).
- A body read that waits longer than the pool's ``stream_idle_timeout`` for the next byte
  fails the exchange with ``UpstreamReset`` (and drops the connection).
- Failures are kept as ``UpstreamReset`` and raised to whoever waits, after the body bytes
  that did arrive; no raw exception leaves this module. A fault of our own in a parser
  callback is logged and kept as ``InternalError`` instead, so it never counts against the
  endpoint.
- ``reusable`` holds only when the response was received whole, the request was written
  whole, the parser says keep-alive and nothing arrived out of turn.
- A request body the upstream stops reading for ``stream_idle_timeout`` fails the exchange
  with ``UpstreamReset`` (the timer runs only while a write waits for room).
- For an upgrade request, a ``101`` with its ``Upgrade`` is the final answer: the exchange
  ends with the head (``upgraded``), the bytes behind it are kept for the tunnel, and from
  then on the socket's events go to the ``tunnel``. Without an upgrade request, a 101 that
  switches protocols is an invalid response.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Protocol, cast

from httptools import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserUpgrade,
    HttpResponseParser,
)

from sidecar.pipeline.errors import InternalError, ProxyError, UpstreamReset

if TYPE_CHECKING:
    from sidecar.tunnel import Tunnel


class PoolHost(Protocol):
    """What a connection reads of the pool it belongs to (``EndpointPool``)."""

    label: str
    stream_idle_timeout: float

    def discard(self, conn: H1Connection) -> None: ...


log = logging.getLogger("pilotfish.transport")


class _Invalid(Exception):
    """Raised by a parser callback: the response breaks a rule the C parser does not check."""


READ_HIGH = 64 * 1024  # buffered body bytes above which the socket is no longer read
_NO_PARSER = HttpResponseParser(object())  # what a lost connection holds: bound to nothing


class H1Connection(asyncio.Protocol):
    __slots__ = (
        "_active",
        "_buffered",
        "_chunks",
        "_drain_waiter",
        "_early",
        "_error",
        "_head",
        "_headers_done",
        "_keep_alive",
        "_loop",
        "_message_done",
        "_parser",
        "_parser_spent",
        "_read_paused",
        "_until_eof",
        "_upgrade",
        "_waiter",
        "_write_paused",
        "closed",
        "content_length",
        "fields",
        "idle_since",
        "in_pool",
        "pool",
        "reason",
        "received_any",
        "request_sent",
        "status",
        "transport",
        "tunnel",
        "upgraded",
        "writer",
    )

    def __init__(self, pool: PoolHost, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self._parser = HttpResponseParser(self)
        self._parser_spent = False
        self._waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._read_paused = False
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._active = False
        self._head = False
        self._headers_done = False
        self._message_done = False
        self._until_eof = False
        self._keep_alive = False
        self._error: ProxyError | None = None
        self.status = 0
        self.reason = ""
        self.fields: list[tuple[bytes, bytes]] = []  # the response's header fields, as sent
        self.content_length: int | None = None
        self.received_any = False
        self.request_sent = False
        self.closed = False
        self.in_pool = False
        self.idle_since = 0.0
        self.writer: asyncio.Task[None] | None = None
        self._upgrade = False
        self.upgraded = False
        self._early = b""
        self.tunnel: Tunnel | None = None

    # -- the exchange, as seen by the client ----------------------------------------------

    def begin(self, head: bool, upgrade: bool = False) -> None:
        """Start an exchange; ``head`` says the response carries no body, ``upgrade`` that
        the request asks to switch protocols."""
        if self._parser_spent:
            self._parser = HttpResponseParser(self)
            self._parser_spent = False
        self._active = True
        self._head = head
        self._upgrade = upgrade
        self._headers_done = self._message_done = self._until_eof = self._keep_alive = False
        self._error = None
        self.received_any = self.request_sent = False
        self.status = 0
        self.content_length = None
        self._chunks.clear()
        self._buffered = 0

    def finish(self) -> None:
        """End the exchange; body bytes nobody read are dropped."""
        self._active = False
        self._chunks.clear()
        self._buffered = 0
        if self._read_paused:
            # A body received whole but left unread: an idle connection must see a close.
            self._read_paused = False
            if not self.closed and self.transport is not None:
                self.transport.resume_reading()

    @property
    def reusable(self) -> bool:
        transport = self.transport
        return (
            self._message_done
            and self._keep_alive
            and self.request_sent
            and self._error is None
            and not self.closed
            and transport is not None
            and not transport.is_closing()
            and not transport.get_write_buffer_size()
        )

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def writelines(self, data: tuple[bytes, ...] | list[bytes]) -> None:
        assert self.transport is not None
        self.transport.writelines(data)

    def take_early(self) -> bytes:
        """The bytes that followed a 101 head (the new protocol's first)."""
        early, self._early = self._early, b""
        return early

    async def drain(self) -> None:
        idle = self.pool.stream_idle_timeout
        while self._write_paused and not self.closed:
            waiter = self._drain_waiter = self._loop.create_future()
            timer = self._loop.call_later(idle, self._upload_stalled, idle) if idle else None
            try:
                await waiter
            finally:
                self._drain_waiter = None
                if timer is not None:
                    timer.cancel()
        if self.closed:
            raise self._error or UpstreamReset(f"{self.pool.label} closed the connection")

    async def wait_headers(self) -> None:
        while not self._headers_done:
            if self._error is not None:
                raise self._error
            waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    @property
    def message_done(self) -> bool:
        """The whole answer arrived (its body may still wait in ``next_chunk``)."""
        return self._message_done

    async def next_chunk(self) -> bytes:
        """The body bytes received so far (b"" once the body ended)."""
        while True:
            chunks = self._chunks
            if chunks:
                data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                self._buffered = 0
                if self._read_paused:
                    self._read_paused = False
                    if not self.closed and self.transport is not None:
                        self.transport.resume_reading()
                return data
            if self._message_done:
                return b""  # received whole: a later failure (of the upload) changes nothing
            if self._error is not None:
                raise self._error
            await self._wait_body()

    def fail(self, error: ProxyError) -> None:
        """End the exchange with ``error`` and drop the connection."""
        if self._error is None:
            self._error = error
        self.close()
        self._wake()

    def close(self) -> None:
        writer = self.writer
        if writer is not None:
            self.writer = None
            writer.cancel()
        if self._active and not self._message_done and self._error is None:
            self._error = UpstreamReset(f"connection to {self.pool.label} was dropped")
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if self._message_done or not self._active:
                transport.close()
            else:
                transport.abort()  # an unfinished exchange: nothing left worth flushing

    async def _wait(self) -> None:
        waiter = self._waiter = self._loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    async def _wait_body(self) -> None:
        # A timer only while a body read waits, so bodies that arrive with their headers
        # (most) cost nothing; a body that stops arriving fails instead of hanging.
        idle = self.pool.stream_idle_timeout
        if not idle:
            await self._wait()
            return
        timer = self._loop.call_later(idle, self._body_stalled, idle)
        try:
            await self._wait()
        finally:
            timer.cancel()

    def _body_stalled(self, idle: float) -> None:
        self.fail(UpstreamReset(f"{self.pool.label} sent no body bytes for {idle:g}s"))

    def _upload_stalled(self, idle: float) -> None:
        self.fail(UpstreamReset(f"{self.pool.label} read none of the request body for {idle:g}s"))

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.from_upstream(data)
            return
        if self.upgraded:
            self._early += data  # before the tunnel takes over
            return
        if not self._active or self._message_done:
            # An upstream speaking out of turn cannot be trusted with the next request.
            self._keep_alive = False
            self.close()
            return
        self.received_any = True
        try:
            self._parser.feed_data(data)
        except HttpParserUpgrade as exc:
            if self.upgraded:  # the 101 we asked for: what follows it is the new protocol's
                self._early = data[exc.args[0] :]
                self._wake()
                return
            self.fail(
                UpstreamReset(
                    f"{self.pool.label} sent an invalid response: it switched protocols unasked"
                )
            )
            return
        except HttpParserError as exc:
            raised = exc.__context__  # httptools wraps what a callback raised
            if isinstance(raised, _Invalid):
                self.fail(UpstreamReset(f"{self.pool.label} sent an invalid response: {raised}"))
            elif isinstance(exc, HttpParserCallbackError) and raised is not None:
                # Our own fault, not the endpoint's: it must not count against it.
                log.error("unhandled error while reading a response", exc_info=raised)
                self.fail(InternalError(f"reading the response of {self.pool.label} failed"))
            else:
                self.fail(UpstreamReset(f"{self.pool.label} sent an invalid response: {exc}"))
            return
        self._wake()

    def eof_received(self) -> bool:
        if self.tunnel is not None:
            self.tunnel.upstream_eof()
            return True  # a tunnel passes the half-close on
        return False  # the transport closes itself; connection_lost settles the exchange

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.tunnel is not None:
            self.tunnel.lost()
        if self._active and not self._message_done and self._error is None:
            if self._headers_done and self._until_eof and exc is None:
                self._message_done = True  # a close-delimited body ends here
            elif self._headers_done:
                self._error = UpstreamReset(
                    f"{self.pool.label} closed the connection before the end of the body"
                )
            else:
                self._error = UpstreamReset(
                    f"{self.pool.label} closed the connection before answering"
                )
        self._wake()
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_result(None)
        self.pool.discard(self)
        # The parser refers back to this connection through its callbacks: without it the
        # connection (and whatever the parser buffered) is freed now, not by the collector.
        self._parser = _NO_PARSER

    def pause_writing(self) -> None:
        self._write_paused = True
        if self.tunnel is not None:
            self.tunnel.upstream_writing(True)

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.tunnel is not None:
            self.tunnel.upstream_writing(False)
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_result(None)

    # -- httptools callbacks (bound once per parser, never per request) --------------------

    def on_message_begin(self) -> None:
        if self._message_done:
            self._keep_alive = False  # a second message nobody asked for
            return
        self.fields = []

    def on_status(self, reason: bytes) -> None:
        if not self._message_done:
            self.reason = reason.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._message_done:
            self.fields.append((name, value))  # kept as bytes: most pass through untouched

    def on_headers_complete(self) -> None:
        if self._message_done:
            return
        status = self._parser.get_status_code()
        if status > 599:  # the parser takes any three digits; RFC 9110 defines 100..599
            raise _Invalid(f"status {status} is outside 100..599")
        self.status = status
        if status == 101 and self._upgrade and self._parser.should_upgrade():
            self.upgraded = True  # the last HTTP on this connection
            self._headers_done = self._message_done = True
            return
        if status < 200:
            return  # informational: the final answer follows
        te = length = None
        for name, value in self.fields:
            lowered = name.lower()
            if lowered == b"content-length":
                length = length or value
            elif lowered == b"transfer-encoding":
                te = te or value
        chunked = te is not None and te.rsplit(b",", 1)[-1].strip().lower() == b"chunked"
        if length is not None and not chunked:
            self.content_length = int(length)  # the parser rejected anything not a number
        self._until_eof = self.content_length is None and not chunked
        self._headers_done = True
        if self._head:
            self._keep_alive = self._parser.should_keep_alive()
            self._message_done = True
            self._parser_spent = True  # it now expects a body that never comes

    def on_body(self, data: bytes) -> None:
        if self._message_done:
            self._keep_alive = False
            return
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > READ_HIGH and not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self._message_done or self.status < 200:
            return
        self._message_done = True
        self._keep_alive = self._parser.should_keep_alive()
