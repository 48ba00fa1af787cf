"""``Responder``: how a handler answers on a listener connection.

``send`` writes a whole response in one write; ``start``/``write``/``finish`` stream one
(with the given Content-Length, else chunked on HTTP/1.1 and close-delimited on 1.0);
``switch`` answers ``101 Switching Protocols``; ``abort`` cuts the connection, the only
honest signal once a response has started. Invariants:
- a response to HEAD, a 1xx, 204 or 304 carries no body, whatever its fields say;
- while draining, every answer is the connection's last (``Connection: close``);
- a client that stops reading holds us at most ``send_timeout`` seconds: then the
  connection is aborted and the write fails with ``ConnectionResetError`` (the client's
  doing, like a disconnect).
"""

from __future__ import annotations

import asyncio

from multidict import CIMultiDict

from sidecar.listener.request import HTTP11, DownstreamRequest
from sidecar.listener.response_head import header_block, status_line


class Responder:
    """The response half of ``H1Connection``; it sets the attributes named below."""

    transport: asyncio.Transport | None
    current: DownstreamRequest | None
    started: bool
    finished: bool
    chunked: bool
    bytes_sent: int
    keep_alive: bool
    _write_ready: asyncio.Future[None] | None
    _send_timeout: float

    @property
    def draining(self) -> bool:
        raise NotImplementedError

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
        transport = self.transport
        if transport is None:
            raise ConnectionResetError("client went away")
        transport.write(head + body if body else head)
        ready = self._write_ready
        if ready is not None and not ready.done():
            await self._wait_writable(ready)
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

    async def switch(self, fields: bytes, protocol: str) -> None:
        """``101 Switching Protocols`` to ``protocol``: from here on the connection
        carries that protocol, never HTTP again."""
        self.started = self.finished = True
        self.keep_alive = False
        head = b"%s%sConnection: Upgrade\r\nUpgrade: %s\r\n\r\n" % (
            status_line(101, ""),
            fields,
            protocol.encode("latin-1"),
        )
        await self._write(head)

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
        if self.draining:  # this answer is the connection's last
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
            await self._wait_writable(ready)

    async def _wait_writable(self, ready: asyncio.Future[None]) -> None:
        # A timer only while the client's buffer is full: most writes never wait.
        if not self._send_timeout:
            await ready
            return
        timer = asyncio.get_running_loop().call_later(self._send_timeout, self._send_stalled)
        try:
            await ready
        finally:
            timer.cancel()

    def _send_stalled(self) -> None:
        ready = self._write_ready
        if ready is not None and not ready.done():
            ready.set_exception(
                ConnectionResetError(f"client read nothing for {self._send_timeout:g}s")
            )
        self.abort()
