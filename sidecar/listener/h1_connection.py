"""``H1Connection``: one client connection of a proxy listener, parsed by llhttp (httptools).

Requests are parsed as bytes arrive (``RequestParsing``: bounds, head rules, refusals,
upgrades) and served in order (pipelined ones wait their turn) by one task per connection,
which calls the server's handler with the request and this connection as its
``Responder``.

Invariants:
- a refused request is answered after the requests before it, then the connection
  closes; a WebSocket upgrade the handler accepts becomes a ``Tunnel`` (``start_tunnel``)
  and the connection carries no HTTP any more;
- a client that disconnects (or half-closes, as nginx and Envoy take it) cancels its
  request's handling;
- a request body the handler did not read is drained (small) or the connection closed;
  a connection closed while the client may still be sending lingers (``LINGER_TIME``):
  the answer, a FIN, and the client's further bytes dropped unread, so that a reset does
  not destroy the answer (nginx's lingering close).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

import httptools
from multidict import CIMultiDict

from sidecar.listener.body import BodyStream, BodyTimeout
from sidecar.listener.head_rules import Refusal
from sidecar.listener.request import DownstreamRequest
from sidecar.listener.request_parser import HALT, ListenerHost, RequestParsing
from sidecar.listener.responder import Responder
from sidecar.listener.response_head import header_block, status_line
from sidecar.pipeline.errors import InternalError, ProxyError
from sidecar.tunnel import Tunnel

log = logging.getLogger("pilotfish.listener")

DRAIN_LIMIT = 64 * 1024  # unread body bytes we read and drop to keep the connection
# After a last answer given while the client may still be sending (a refusal, an unread
# body), its input is read and dropped for a while before the close, as nginx's
# lingering_close does: closing a socket with unread input resets it, and a reset can
# destroy the answer before the client reads it. Past LINGER_BYTES nothing more is read.
LINGER_TIME = 2.0
# A parser bound to nothing, never fed: what a closed connection holds instead of its own.
_NO_PARSER = httptools.HttpRequestParser(object())
LINGER_BYTES = 4 * 1024 * 1024
Handler = Callable[[DownstreamRequest, "H1Connection"], Awaitable[None]]

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class H1Connection(RequestParsing, Responder, asyncio.Protocol):
    def __init__(self, server: ListenerHost) -> None:
        self.server = server
        self.handler = server.handler
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[DownstreamRequest] = deque()
        self.task: asyncio.Task[None] | None = None
        self.wakeup: asyncio.Future[None] | None = None
        self.current: DownstreamRequest | None = None
        self.closing = False
        self.client_ip = ""
        self.tunnel: Tunnel | None = None
        self._send_timeout = server.send_timeout
        self._write_ready: asyncio.Future[None] | None = None
        # the head being parsed
        self._url = b""
        self._url_tail = b""  # the last piece of the target and the read it came in
        self._url_chunk: bytes | None = None
        self._chunk: bytes | None = None  # the read being parsed
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._line = 0  # bytes of the head line still arriving
        self._in_head = False
        self._began = False  # a message began in the read being parsed
        self._head_since = 0.0
        self._head_timer: asyncio.TimerHandle | None = None
        # the body being parsed, and the request it belongs to
        self._body: BodyStream | None = None
        self._body_request: DownstreamRequest | None = None
        # reading
        self._pauses = 0
        self._rest: bytes | None = None  # what is left of a read being parsed in slices
        self._refusal: Refusal | None = None  # answered once the requests before it are
        self._early = b""  # bytes behind a WebSocket upgrade head, for the tunnel
        self._lingering: int | None = None  # bytes still to drop before the close
        self._linger_timer: asyncio.TimerHandle | None = None
        # One keep-alive timer per connection, re-armed lazily: per request we only stamp
        # the time the connection went idle (no timer churn on the hot path).
        self._idle: asyncio.TimerHandle | None = None
        self._idle_since: float | None = None
        # the current response
        self.started = False
        self.finished = False
        self.chunked = False
        self.bytes_sent = 0
        self.keep_alive = True

    @property
    def draining(self) -> bool:
        return self.server.closing

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        server = self.server
        if not server.admit(self):
            transport.close()
            self.transport = None
            self.closing = True
            return
        peer = transport.get_extra_info("peername")
        self.client_ip = peer[0] if peer else ""  # asked once: every request reads it
        self._loop = asyncio.get_running_loop()
        self.task = self._loop.create_task(self._serve())
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.forget(self)
        self.closing = True
        self.transport = None
        # What a hostile client left behind goes now, not when the cyclic collector gets to
        # this connection: the parser (its buffers) refers back to it through its callbacks.
        self.parser = _NO_PARSER
        self._rest = self._url_chunk = None
        self._early = b""
        self._headers = []
        for timer in (self._idle, self._head_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        if self.tunnel is not None:
            self.tunnel.lost()
        if self._body is not None:
            self._body.fail(ConnectionResetError("client closed the connection"))
        for request in self.queue:
            request.content.fail(ConnectionResetError("client closed the connection"))
        ready = self._write_ready
        if ready is not None and not ready.done():
            ready.set_exception(ConnectionResetError("client went away"))
            ready.exception()  # retrieved: nobody may be waiting to write
        if self.task is not None and not self.task.done() and self.tunnel is None:
            self.task.cancel()  # the client is gone: stop working for it

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.from_client(data)
        elif self._lingering is not None:
            self._lingering -= len(data)
            if self._lingering <= 0 and self.transport is not None:
                # Enough dropped: the client now waits on TCP flow control until the close.
                self.transport.pause_reading()
        elif self._pauses & HALT:
            self._early += data  # in flight when reading stopped: a tunnel's first bytes
        elif self._rest is not None:
            self._rest += data
        else:
            self._feed(data)

    def eof_received(self) -> bool | None:
        if self.tunnel is not None:
            self.tunnel.client_eof()
            return True  # a tunnel passes the half-close on
        # As nginx and Envoy do: a client that ends its side has given up on its requests.
        return None

    def pause_writing(self) -> None:
        if self.tunnel is not None:
            self.tunnel.client_writing(True)
        elif self._write_ready is None or self._write_ready.done():
            self._write_ready = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.tunnel is not None:
            self.tunnel.client_writing(False)
        elif self._write_ready is not None and not self._write_ready.done():
            self._write_ready.set_result(None)

    # -- serving -----------------------------------------------------------------------

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.queue:
                if self._refusal is not None:
                    self._refuse(self._refusal)
                    break
                if self.closing or self.transport is None or self._pauses & HALT:
                    self._close(linger=bool(self._pauses & HALT))
                    break
                self.wakeup = loop.create_future()
                await self.wakeup
                self.wakeup = None
                continue
            request = self.queue.popleft()
            self.current = request
            self.started = self.finished = self.chunked = False
            self.bytes_sent = 0
            self.keep_alive = request.keep_alive and not self.server.closing
            try:
                await self.handler(request, self)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "unhandled error while serving %s %s", request.method, request.raw_path
                )
                if not self.started:
                    self.keep_alive = False
                    headers = CIMultiDict({"x-pilotfish-error": InternalError.reason})
                    await self.send(500, headers, b"internal error\n")
            if not self.finished or not (request.content.at_eof or await self._drain_body(request)):
                self.keep_alive = False
            self.current = None
            if not self.keep_alive or self.transport is None:
                self._close(linger=not request.content.at_eof or bool(self._pauses & HALT))
                break
            if self.server.closing and not self.queue:
                self._close()
                break
            self._arm_idle()

    async def _drain_body(self, request: DownstreamRequest) -> bool:
        body = request.content
        if body.at_eof:
            return True
        if request.content_length is not None and request.content_length > DRAIN_LIMIT:
            return False
        dropped = 0
        try:
            async with asyncio.timeout(1.0):
                while chunk := await body.readany():
                    dropped += len(chunk)
                    if dropped > DRAIN_LIMIT:
                        return False
        except (TimeoutError, BodyTimeout, ConnectionResetError, ProxyError):
            return False
        return True

    def start_tunnel(self, upstream: asyncio.Transport, from_upstream: bytes) -> Tunnel:
        """After ``switch``: relay bytes between this client and ``upstream``."""
        if self.transport is None:
            raise ConnectionResetError("client went away")
        tunnel = self.tunnel = Tunnel(
            self.transport,
            upstream,
            idle_timeout=self.server.tunnel_idle_timeout,
            loop=self._loop,
        )
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        early, self._early = self._early, b""
        tunnel.start(early, from_upstream)
        self._pauses = 0
        if not self.transport.is_closing():
            self.transport.resume_reading()
        return tunnel

    # -- helpers -----------------------------------------------------------------------

    def _wake(self) -> None:
        if self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)

    def _refuse(self, refusal: Refusal) -> None:
        """Answer a refused request (with nothing of a response begun) and close."""
        if self.transport is not None and (self.current is None or not self.started):
            body = f"{refusal.detail}\n".encode()
            fields = header_block(
                CIMultiDict({"Content-Type": "text/plain", "x-pilotfish-error": refusal.error})
            )
            framing = b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
            self.transport.write(status_line(refusal.status, "") + fields + framing + body)
        self._close(linger=True)

    def _arm_idle(self) -> None:
        loop = self._loop
        self._idle_since = loop.time()
        if self._idle is None:
            self._idle = loop.call_at(
                self._idle_since + self.server.keepalive_timeout, self._idle_check
            )

    def _idle_check(self) -> None:
        self._idle = None
        since = self._idle_since
        now = self._loop.time()
        if since is None:  # busy: look again one timeout from now
            if self.transport is not None:
                self._idle = self._loop.call_at(
                    now + self.server.keepalive_timeout, self._idle_check
                )
            return
        deadline = since + self.server.keepalive_timeout
        if now >= deadline:
            self._close()
        else:
            self._idle = self._loop.call_at(deadline, self._idle_check)

    def _close(self, linger: bool = False) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        self.closing = True
        self._wake()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if not linger or not transport.can_write_eof():
            transport.close()
            return
        # Our answer, then a FIN; what the client still sends is dropped, not parsed.
        self._lingering = LINGER_BYTES
        self._rest = None
        self._pauses = 0
        try:
            if not transport.is_reading():
                transport.resume_reading()
            transport.write_eof()
        except OSError:  # the client is gone already: nothing to linger for
            transport.close()
            return
        self._linger_timer = self._loop.call_later(LINGER_TIME, transport.close)

    def close_if_idle(self) -> None:
        if self.current is None and not self.queue and not self._in_head:
            self._close()
