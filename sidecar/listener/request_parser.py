"""``RequestParsing``: how a listener connection turns bytes into requests (llhttp).

The parsing half of ``H1Connection``: llhttp's callbacks, the bounds checked while a head
streams in, the RFC 9112 rules of ``head_rules``, refusals, and upgrades. Invariants:
- bounds: the request target (``MAX_URL``, 414), one header line (``MAX_FIELD``), the
  whole head (``MAX_HEAD``) and the field count (``MAX_HEADERS``) are checked while the
  bytes stream in (431), so a client sending an endless line costs at most one read's
  worth of memory; a head still incomplete ``head_timeout`` after its first byte gets 408
  from a timer armed only when a read leaves a head unfinished;
- the parser is fed at most ``FEED_SLICE`` bytes at a time and the loop runs in between,
  so no framing (a million one-byte chunks, a flood of tiny pipelined requests) holds the
  event loop for long; reading pauses until the slices are done;
- a request the listener refuses never reaches the handler, whole or in part
  (``_stop_parsing``): the requests before it are answered first; a body that breaks its
  framing fails its reader with ``BadRequest`` (the client's fault, never an endpoint's);
- upgrades: ``CONNECT`` and WebSocket stop the HTTP parsing for good; any other upgrade
  (``h2c``) is ignored and the request parsed on as HTTP/1.1 (RFC 9110 §7.8), body and all.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

import httptools

from sidecar.listener.body import EMPTY_BODY, BodyStream
from sidecar.listener.fields import RequestFields
from sidecar.listener.head_rules import (
    Refusal,
    check_head,
    foreign_protocol,
    split_target,
    transfer_coding_refusal,
    version_refusal,
)
from sidecar.listener.request import HTTP10, HTTP11, DownstreamRequest
from sidecar.pipeline.errors import BadRequest, InternalError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sidecar.listener.responder import Responder


class ListenerHost(Protocol):
    """What a connection reads of the server it was accepted by (``H1Server``)."""

    handler: Callable[[DownstreamRequest, Any], Awaitable[None]]
    keepalive_timeout: float
    head_timeout: float
    body_timeout: float
    send_timeout: float
    tunnel_idle_timeout: float
    closing: bool

    def admit(self, conn: Responder) -> bool: ...

    def forget(self, conn: Responder) -> None: ...

    def refused(self, refusal: Refusal) -> None: ...


log = logging.getLogger("pilotfish.listener")

MAX_URL = 8 * 1024  # request target (nginx: 8k per line)
MAX_FIELD = 16 * 1024  # one header line (HAProxy: the whole head in 16k)
MAX_HEAD = 64 * 1024  # request line and header fields (Envoy: 60 KiB)
MAX_HEADERS = 100  # fields (Envoy's max_headers_count)
FEED_SLICE = 64 * 1024  # parser work between two turns of the event loop

# Why reading is paused; reading resumes when no reason is left.
BODY = 1  # the body reader is behind (back-pressure)
SLICES = 2  # a read is being parsed slice by slice
HALT = 4  # no more HTTP on this connection (refused, upgraded)

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _Refused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.detail)
        self.refusal = refusal


class RequestParsing:
    """The parsing half of ``H1Connection``, which sets the attributes named below."""

    server: ListenerHost
    parser: httptools.HttpRequestParser
    transport: asyncio.Transport | None
    queue: deque[DownstreamRequest]
    current: DownstreamRequest | None
    closing: bool
    started: bool
    client_ip: str
    _loop: asyncio.AbstractEventLoop
    _url: bytes
    _url_tail: bytes
    _url_chunk: bytes | None
    _chunk: bytes | None
    _headers: RequestFields
    _header_bytes: int
    _line: int
    _in_head: bool
    _began: bool
    _head_since: float
    _head_timer: asyncio.TimerHandle | None
    _body: BodyStream | None
    _body_request: DownstreamRequest | None
    _pauses: int
    _rest: bytes | None
    _refusal: Refusal | None
    _early: bytes
    _idle_since: float | None

    def _wake(self) -> None:
        raise NotImplementedError

    # -- parsing -----------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        if len(data) > FEED_SLICE:
            self._rest = data[FEED_SLICE:]
            data = data[:FEED_SLICE]
            self._pause(SLICES)
            self._loop.call_soon(self._feed_rest)
        self._chunk = data
        self._began = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._upgraded(data[exc.args[0] :])
            return
        except httptools.HttpParserError as exc:
            self._parse_failed(exc, data)
            return
        finally:
            self._chunk = None
        if self._in_head:
            self._head_arriving(data)

    def _feed_rest(self) -> None:
        rest, self._rest = self._rest, None
        if rest is None or self._pauses & HALT or self.transport is None:
            return
        self._feed(rest)
        if self._rest is None:
            self._resume(SLICES)

    def _head_arriving(self, data: bytes) -> None:
        """A read ended inside a head: bound what is still arriving, and its time."""
        newline = data.rfind(b"\n")
        if newline >= 0:
            self._line = len(data) - newline - 1
        elif self._began:
            # Over-counts only what ended a previous message in this read without a
            # newline (a body's tail) ahead of a request line that has not ended.
            self._line = len(data)
        else:
            self._line += len(data)
        if self._line > MAX_FIELD or len(self._url) + self._header_bytes + self._line > MAX_HEAD:
            self._stop_parsing(Refusal(431, "request header fields too large"))
            return
        if self._head_timer is None:
            self._head_timer = self._loop.call_at(
                self._head_since + self.server.head_timeout, self._head_expired
            )

    def _head_expired(self) -> None:
        self._head_timer = None
        if self._in_head and self.transport is not None:
            self._stop_parsing(Refusal(408, "request head not received in time", "request_timeout"))

    def _parse_failed(self, exc: httptools.HttpParserError, data: bytes) -> None:
        raised = exc.__context__  # httptools wraps what a callback raised
        if isinstance(raised, _Refused):
            refusal = raised.refusal
        elif isinstance(exc, httptools.HttpParserCallbackError) and raised is not None:
            # Our own fault while taking the request in: not the client's (no 400).
            log.error("unhandled error while reading a request", exc_info=raised)
            refusal = Refusal(500, "internal error", InternalError.reason)
        elif "Transfer-Encoding` header value" in str(exc):
            refusal = transfer_coding_refusal(data)
        else:
            refusal = Refusal(400, f"malformed request: {exc}")
        self._stop_parsing(refusal)

    def _stop_parsing(self, refusal: Refusal) -> None:
        """No more requests are taken from this connection; those before answered first."""
        self._pause(HALT)
        self._rest = None
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self.server.refused(refusal)
        broken = self._body_request
        if broken is not None and self._body is not None:
            # Its body broke its framing: never served if not begun, else its reader fails.
            self._body.fail(BadRequest(f"{refusal.detail} (in the request body)"))
            self._body = self._body_request = None
            if broken is not self.current:
                self.queue.remove(broken)
            else:
                return  # its handler answers (or has answered) it; then we close
        self._refusal = refusal
        self._wake()

    def _upgraded(self, rest: bytes) -> None:
        """llhttp stopped at an upgrade; the request is queued, ``rest`` follows its head."""
        request = self.queue[-1]
        if request.upgrade == "ignored":  # h2c and the like: carry on in HTTP/1.1
            if self._body is None:
                self.parser = httptools.HttpRequestParser(self)
            else:
                self.parser = httptools.HttpRequestParser(_ResumedBody(self, self._body))
                self.parser.feed_data(_ResumedBody.head_for(request))
            if rest:
                self._feed(rest)
            return
        self._pause(HALT)  # WebSocket or CONNECT: whatever follows is not HTTP
        self._early = rest + (self._rest or b"")
        self._rest = None

    # -- httptools callbacks -------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = RequestFields()
        self._header_bytes = 0
        self._line = 0
        self._in_head = self._began = True
        self._idle_since = None
        self._head_since = self._loop.time()

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._url_tail = url
        self._url_chunk = self._chunk
        if len(self._url) > MAX_URL:
            raise _Refused(Refusal(414, "request target too long"))

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value)
        self._header_bytes += size + 4
        if size > MAX_FIELD or len(self._headers) >= MAX_HEADERS or self._header_bytes > MAX_HEAD:
            raise _Refused(Refusal(431, "request header fields too large"))
        self._headers.add(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        parser = self.parser
        given = parser.get_http_version()
        refusal = version_refusal(given)
        fields = self._headers
        if refusal is None:
            refusal = check_head(given, fields)
        url_chunk, self._url_chunk = self._url_chunk, None  # a whole read: not kept longer
        if refusal is None and given == "1.0" and foreign_protocol(url_chunk, self._url_tail):
            refusal = Refusal(400, "the request line names a protocol other than HTTP")
        target = split_target(self._url.decode("utf-8", "surrogateescape"))
        if isinstance(target, Refusal):
            refusal = refusal or target
        if refusal is not None:
            raise _Refused(refusal)
        assert not isinstance(target, Refusal)
        noted = fields.noted
        if target.authority is not None:
            host: str | None = target.authority  # RFC 9112 §3.2.2: the target's wins
        else:
            given_host = noted.get(b"host")
            host = given_host.decode("utf-8", "surrogateescape") if given_host is not None else None
        given_length = noted.get(b"content-length")
        # llhttp already rejected a malformed or repeated length, and a length beside
        # Transfer-Encoding.
        length = int(given_length) if given_length is not None else None
        chunked = b"transfer-encoding" in noted
        version = HTTP11 if given == "1.1" else HTTP10
        has_body = chunked or bool(length)
        method = parser.get_method().decode("ascii")
        upgrade = _upgrade_kind(method, fields, has_body) if parser.should_upgrade() else None
        if has_body:
            expect = version == HTTP11 and noted.get(b"expect", b"").lower() == b"100-continue"
            body = self._body = BodyStream(
                self._pressure,
                self._send_continue if expect else None,
                self.server.body_timeout,
            )
        else:
            body = EMPTY_BODY
        request = DownstreamRequest(
            method,
            target.path,
            fields,
            version,
            self.transport,
            body,
            length,
            has_body,
            parser.should_keep_alive()
            and not self.closing
            and (upgrade is None or upgrade == "ignored"),
            self.client_ip,
            upgrade,
            host,
        )
        if has_body:
            self._body_request = request
        self.queue.append(request)
        self._wake()

    def on_body(self, data: bytes) -> None:
        if self._body is not None:
            self._body.feed(data)

    def on_message_complete(self) -> None:
        body = self._body
        if body is not None:
            if self._body_request is not None and self._body_request.upgrade == "ignored":
                return  # llhttp skips the body of an upgrade: ``_ResumedBody`` reads it
            body.feed_eof()
            self._body = self._body_request = None

    def _send_continue(self) -> None:
        if self.transport is not None and not self.started:
            self.transport.write(_CONTINUE)

    def _pressure(self, stop: bool) -> None:
        if stop:
            self._pause(BODY)
        else:
            self._resume(BODY)

    def _pause(self, reason: int) -> None:
        if not self._pauses and self.transport is not None:
            self.transport.pause_reading()
        self._pauses |= reason

    def _resume(self, reason: int) -> None:
        was = self._pauses
        self._pauses &= ~reason
        if was and not self._pauses and self.transport is not None:
            self.transport.resume_reading()


def _upgrade_kind(method: str, fields: RequestFields, has_body: bool) -> str:
    """What an upgrade request becomes: ``connect`` (refused), ``websocket`` (tunnelled)
    or ``ignored`` (served as HTTP/1.1)."""
    if method == "CONNECT":
        return "connect"
    if method == "GET" and not has_body:
        offered = fields.first(b"upgrade") or b""
        if any(token.strip().lower() == b"websocket" for token in offered.split(b",")):
            return "websocket"
    return "ignored"


class _ResumedBody:
    """The parser's callbacks after an ignored upgrade whose request has a body.

    llhttp takes the body of an upgrade request to be the new protocol's, so a fresh
    parser is fed a head with the same framing, whose body goes to the request; every
    message after it goes to the connection as usual.
    """

    def __init__(self, conn: RequestParsing, body: BodyStream) -> None:
        self._conn = conn
        self._body: BodyStream | None = body

    @staticmethod
    def head_for(request: DownstreamRequest) -> bytes:
        length = request.content_length
        if length is not None:
            return b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % length
        return b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"

    def on_message_begin(self) -> None:
        if self._body is None:
            self._conn.on_message_begin()

    def on_url(self, url: bytes) -> None:
        if self._body is None:
            self._conn.on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._body is None:
            self._conn.on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._body is None:
            self._conn.on_headers_complete()

    def on_body(self, data: bytes) -> None:
        if self._body is not None:
            self._body.feed(data)
        else:
            self._conn.on_body(data)

    def on_message_complete(self) -> None:
        body = self._body
        if body is None:
            self._conn.on_message_complete()
            return
        self._body = None
        body.feed_eof()
        self._conn._body = self._conn._body_request = None
