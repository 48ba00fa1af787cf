"""The HTTP/1.1 server of the proxy listeners: ``asyncio.Protocol`` + llhttp (httptools).

One ``H1Connection`` per client connection parses requests as they arrive and serves them
in order (pipelined requests wait their turn) from one task. The handler answers through
the connection's ``Responder`` methods: ``send`` for a whole response in one write, or
``start``/``write``/``finish`` to stream. Invariants:
- request smuggling: llhttp rejects a request carrying both Content-Length and
  Transfer-Encoding, or a malformed length/chunk size; such a request gets 400 and the
  connection is closed (never reused after a framing doubt);
- limits: request line ``MAX_URL`` bytes (414), ``MAX_HEADERS`` fields / ``MAX_HEADER_BYTES``
  bytes of headers (431); a request head still incomplete ``head_timeout`` after its first
  byte gets 408 and the connection is closed (a stalled head would otherwise hold it open);
  a request body silent for ``body_timeout`` while it is read fails its reader with
  ``BodyTimeout``;
- a client that disconnects cancels its request's handling;
- a request body the handler did not read is drained (small) or the connection closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from sidecar.listener.body import EMPTY_BODY, BodyStream, BodyTimeout
from sidecar.listener.request import HTTP10, HTTP11, DownstreamRequest, HttpVersion
from sidecar.listener.response_head import header_block, status_line
from sidecar.pipeline.errors import InternalError

log = logging.getLogger("pilotfish.listener")

MAX_URL = 8 * 1024
MAX_HEADERS = 100
MAX_HEADER_BYTES = 64 * 1024
DRAIN_LIMIT = 64 * 1024  # unread body bytes we read and drop to keep the connection
KEEPALIVE_TIMEOUT = 75.0
HEAD_TIMEOUT = 60.0  # a request's line and headers must arrive within this (nginx: 60 s)
BODY_TIMEOUT = 60.0  # longest silence within a request body being read (nginx: 60 s)

Handler = Callable[[DownstreamRequest, "H1Connection"], Awaitable[None]]
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class H1Connection(asyncio.Protocol):
    def __init__(self, server: H1Server) -> None:
        self.server = server
        self.handler = server.handler
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[DownstreamRequest] = deque()
        self.task: asyncio.Task[None] | None = None
        self.wakeup: asyncio.Future[None] | None = None
        self.current: DownstreamRequest | None = None
        self.closing = False
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._body: BodyStream | None = None
        self.client_ip = ""
        self._write_ready: asyncio.Future[None] | None = None
        # One keep-alive timer per connection, re-armed lazily: per request we only stamp
        # the time the connection went idle (no timer churn on the hot path).
        self._idle: asyncio.TimerHandle | None = None
        self._idle_since: float | None = None
        self._head_since: float | None = None  # when the request head now arriving began
        # the current response
        self.started = False
        self.finished = False
        self.chunked = False
        self.bytes_sent = 0
        self.keep_alive = True

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.client_ip = peer[0] if peer else ""  # asked once: every request reads it
        self.server.connections.add(self)
        self._loop = asyncio.get_running_loop()
        self.task = self._loop.create_task(self._serve())
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.closing = True
        if self._idle is not None:
            self._idle.cancel()
        if self._body is not None:
            self._body.fail(ConnectionResetError("client closed the connection"))
        for request in self.queue:
            request.content.fail(ConnectionResetError("client closed the connection"))
        if self._write_ready is not None and not self._write_ready.done():
            self._write_ready.set_exception(ConnectionResetError("client went away"))
        if self.task is not None and not self.task.done():
            self.task.cancel()  # the client is gone: stop working for it
        self.transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # headers are complete; the handler refuses the upgrade and we close
        except httptools.HttpParserError as exc:
            raised = exc.__context__  # httptools wraps what a callback raised
            if isinstance(raised, _Refused):
                self._refuse(raised.status, raised.reason)
            elif isinstance(exc, httptools.HttpParserCallbackError) and raised is not None:
                # Our own fault while taking the request in: not the client's (no 400).
                log.error("unhandled error while reading a request", exc_info=raised)
                self._refuse(500, "internal error", InternalError.reason)
            else:
                self._refuse(400, f"malformed request: {exc}")

    def pause_writing(self) -> None:
        if self._write_ready is None or self._write_ready.done():
            self._write_ready = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._write_ready is not None and not self._write_ready.done():
            self._write_ready.set_result(None)

    def eof_received(self) -> bool | None:
        return None  # half-closed by the client: finish what we have, then close

    # -- httptools callbacks -------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._header_bytes = 0
        self._idle_since = None
        self._head_since = self._loop.time()

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_URL:
            raise _Refused(414, "request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if len(self._headers) >= MAX_HEADERS or self._header_bytes > MAX_HEADER_BYTES:
            raise _Refused(431, "request header fields too large")
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._head_since = None
        parser = self.parser
        headers: CIMultiDict[str] = CIMultiDict(
            [
                (name.decode("latin-1"), value.decode("utf-8", "surrogateescape"))
                for name, value in self._headers
            ]
        )
        given_length = headers.get("Content-Length")
        # llhttp already rejected a malformed or repeated length, and a length beside
        # Transfer-Encoding.
        length = int(given_length) if given_length is not None else None
        chunked = "Transfer-Encoding" in headers
        given = parser.get_http_version()
        version = HTTP11 if given == "1.1" else (HTTP10 if given == "1.0" else HttpVersion(1, 0))
        has_body = chunked or bool(length)
        if has_body:
            expect = headers.get("Expect", "").lower() == "100-continue" and version == HTTP11
            body = self._body = BodyStream(
                self._pressure,
                self._send_continue if expect else None,
                self.server.body_timeout,
            )
        else:
            body = EMPTY_BODY
        request = DownstreamRequest(
            parser.get_method().decode("ascii"),
            self._url.decode("utf-8", "surrogateescape"),
            CIMultiDictProxy(headers),
            version,
            self.transport,
            body,
            length,
            has_body,
            parser.should_keep_alive() and not self.closing,
            self.client_ip,
        )
        self.queue.append(request)
        if self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)

    def on_body(self, data: bytes) -> None:
        if self._body is not None:
            self._body.feed(data)

    def on_message_complete(self) -> None:
        if self._body is not None:
            self._body.feed_eof()
            self._body = None

    # -- serving -----------------------------------------------------------------------

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.queue:
                if self.closing or self.transport is None:
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
            if not self.finished or not await self._drain_body(request):
                self.keep_alive = False
            self.current = None
            if not self.keep_alive or self.transport is None:
                self._close()
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
        except (TimeoutError, BodyTimeout, ConnectionResetError):
            return False
        return True

    # -- the Responder API -----------------------------------------------------------

    async def send(
        self, status: int, headers: CIMultiDict[str], body: bytes, reason: str = ""
    ) -> None:
        """A whole response in one write; Content-Length is set from ``body``."""
        await self.send_fields(status, header_block(headers), body, reason)

    async def send_fields(self, status: int, fields: bytes, body: bytes, reason: str = "") -> None:
        """``send`` with the header fields as a block of ``Name: value\\r\\n`` lines,
        which holds no Content-Length and no Connection field."""
        head = self._head(status, reason, fields, b"Content-Length: %d\r\n" % len(body))
        if self.current is not None and self.current.method == "HEAD":
            body = b""
        await self._write(head + body if body else head)
        self.bytes_sent = len(body)
        self.finished = True

    async def start(self, status: int, headers: CIMultiDict[str], reason: str = "") -> None:
        """Begin a streamed response: with the given Content-Length, or chunked."""
        length = headers.popall("Content-Length", None)
        await self.start_fields(
            status, header_block(headers), int(length[-1]) if length else None, reason
        )

    async def start_fields(
        self, status: int, fields: bytes, length: int | None, reason: str = ""
    ) -> None:
        """``start`` with the fields as a block (as for ``send_fields``) and the length of
        the body to come, if known."""
        no_body = (
            status in (204, 304)
            or 100 <= status < 200
            or (self.current is not None and self.current.method == "HEAD")
        )
        framing = b""
        if length is not None:
            framing = b"Content-Length: %d\r\n" % length
        elif not no_body:
            if self.current is not None and self.current.version == HTTP11:
                framing = b"Transfer-Encoding: chunked\r\n"
                self.chunked = True
            else:
                self.keep_alive = False  # HTTP/1.0: the end of the body is the close
        await self._write(self._head(status, reason, fields, framing))

    async def write(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.bytes_sent += len(chunk)
        if self.chunked:
            await self._write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        else:
            await self._write(chunk)

    async def finish(self) -> None:
        if self.chunked:
            await self._write(b"0\r\n\r\n")
        self.finished = True

    def abort(self) -> None:
        """Cut the connection: the only honest signal once a response has started."""
        self.keep_alive = False
        if self.transport is not None:
            self.transport.abort()

    def _head(self, status: int, reason: str, fields: bytes, framing: bytes) -> bytes:
        self.started = True
        if self.server.closing:  # draining: this answer is the connection's last
            self.keep_alive = False
        line = status_line(status, reason)
        if self.keep_alive:
            return b"%s%s%s\r\n" % (line, fields, framing)
        return b"%s%s%sConnection: close\r\n\r\n" % (line, fields, framing)

    async def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None:
            raise ConnectionResetError("client went away")
        transport.write(data)
        ready = self._write_ready
        if ready is not None and not ready.done():
            await ready

    # -- helpers -----------------------------------------------------------------------

    def _send_continue(self) -> None:
        if self.transport is not None and not self.started:
            self.transport.write(_CONTINUE)

    def _pressure(self, stop: bool) -> None:
        if self.transport is None:
            return
        if stop:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    def _refuse(self, status: int, reason: str, error: str = "bad_request") -> None:
        # A framing problem: answer once (if we are not mid-response) and close.
        self.closing = True
        if self.transport is not None and self.current is None:
            body = f"{reason}\n".encode()
            fields = header_block(
                CIMultiDict({"Content-Type": "text/plain", "x-pilotfish-error": error})
            )
            framing = b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
            self.transport.write(status_line(status, "") + fields + framing + body)
        self._close()

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
        if since is None:  # busy: look again one timeout from now
            now = asyncio.get_running_loop().time()
            head = self._head_since
            stalled = head is not None and now - head >= self.server.head_timeout
            if stalled and self.current is None:  # a request being served is not cut
                self._refuse(408, "request head not received in time", "request_timeout")
                return
            self._arm_idle_later(now)
            return
        deadline = since + self.server.keepalive_timeout
        if asyncio.get_running_loop().time() >= deadline:
            self._close()
        else:
            self._idle = asyncio.get_running_loop().call_at(deadline, self._idle_check)

    def _arm_idle_later(self, now: float) -> None:
        if self.transport is not None:
            server = self.server
            self._idle = asyncio.get_running_loop().call_at(
                now + min(server.keepalive_timeout, server.head_timeout), self._idle_check
            )

    def _close(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self.transport is not None:
            self.transport.close()
        self.closing = True
        if self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)

    def close_if_idle(self) -> None:
        if self.current is None and not self.queue:
            self._close()


class H1Server:
    """Listens, serves, and drains gracefully: stop accepting, finish in-flight, close."""

    def __init__(
        self,
        handler: Handler,
        *,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
        head_timeout: float = HEAD_TIMEOUT,
        body_timeout: float = BODY_TIMEOUT,
    ) -> None:
        self.handler = handler
        self.keepalive_timeout = keepalive_timeout
        self.head_timeout = head_timeout
        self.body_timeout = body_timeout
        self.connections: set[H1Connection] = set()
        self.closing = False
        self._server: asyncio.base_events.Server | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: H1Connection(self), host, port, reuse_address=True, backlog=1024
        )
        sockname = self._server.sockets[0].getsockname()
        return sockname[0], sockname[1]

    async def stop(self, grace: float) -> None:
        self.closing = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.close_if_idle()
        tasks = [c.task for c in self.connections if c.task is not None and not c.task.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for conn in list(self.connections):
                if conn.transport is not None:
                    conn.transport.abort()
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
