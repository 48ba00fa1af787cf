"""``BodyStream``: a downstream request body, fed by the parser, read by the pipeline.

Bounded: when more than ``HIGH_WATER`` bytes wait unread, the connection stops reading
(TCP back-pressure reaches the client) until the reader catches up. ``readany`` returns
everything that arrived since the last read as one piece (a body sent in a million tiny
chunks costs its reader a few reads, not a million), ``b""`` at the end of the body, and
raises ``ConnectionResetError`` when the client went away before sending all of it, or
the error the body was failed with (``BodyTimeout``, ``BadRequest`` for broken framing).
``Expect: 100-continue`` is answered on the first read, so a request the sidecar refuses
early never makes the client send its body. ``when_complete`` calls back once the whole
body has arrived (the moment the request's timers start).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable

from sidecar.pipeline.errors import RequestTimeout

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


class BodyTimeout(RequestTimeout):
    """The client sent no body bytes for the stream's idle timeout while a reader waited.

    A ``RequestTimeout``: whoever reads the body (the proxy buffering it, the upstream
    transport streaming it) fails with the client's fault, answered 408, never an
    endpoint's."""


class BodyStream:
    __slots__ = (
        "_chunks",
        "_complete",
        "_continue",
        "_eof",
        "_error",
        "_idle_timeout",
        "_on_pressure",
        "_paused",
        "_size",
        "_waiter",
        "total_bytes",
    )

    def __init__(
        self,
        on_pressure: Callable[[bool], None],
        send_continue: Callable[[], None] | None = None,
        idle_timeout: float = 0.0,
    ) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._on_pressure = on_pressure  # True: stop reading the socket; False: resume
        self._paused = False
        self._continue = send_continue
        self._idle_timeout = idle_timeout  # longest wait for the next bytes; 0: none
        self._complete: list[Callable[[], None]] | None = None
        self.total_bytes = 0

    # -- the parser's side -------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        self.total_bytes += len(data)
        if self._size > HIGH_WATER and not self._paused:
            self._paused = True
            self._on_pressure(True)
        self._wake()

    def feed_eof(self) -> None:
        self._eof = True
        self._wake()
        callbacks, self._complete = self._complete, None
        if callbacks:
            for callback in callbacks:
                callback()

    def when_complete(self, callback: Callable[[], None]) -> None:
        """``callback()`` once the whole body has arrived: now, if it has."""
        if self._eof:
            callback()
        elif self._complete is None:
            self._complete = [callback]
        else:
            self._complete.append(callback)

    def fail(self, error: BaseException) -> None:
        if not self._eof:
            self._error = error
            self._wake()

    def _stalled(self) -> None:
        self.fail(BodyTimeout(f"no request body bytes for {self._idle_timeout:g}s"))

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the reader's side -------------------------------------------------------------

    @property
    def at_eof(self) -> bool:
        return self._eof and not self._chunks

    async def readany(self) -> bytes:
        if self._continue is not None:
            send, self._continue = self._continue, None
            send()
        while not self._chunks:
            if self._eof:
                return b""
            if self._error is not None:
                raise self._error
            loop = asyncio.get_running_loop()
            self._waiter = loop.create_future()
            # A timer only while a reader waits: a body that came whole costs nothing.
            timer = (
                loop.call_later(self._idle_timeout, self._stalled) if self._idle_timeout else None
            )
            try:
                await self._waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
        chunks = self._chunks
        if len(chunks) == 1:
            data = chunks.popleft()
        else:
            data = b"".join(chunks)
            chunks.clear()
        self._size -= len(data)
        if self._paused and self._size < LOW_WATER:
            self._paused = False
            self._on_pressure(False)
        return data

    async def read(self) -> bytes:
        parts = []
        while chunk := await self.readany():
            parts.append(chunk)
        return b"".join(parts)

    async def iter_any(self) -> AsyncIterator[bytes]:
        while chunk := await self.readany():
            yield chunk

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.iter_any()


# Shared by every request without a body: it is at its end, so nothing can change it (feeds
# come only with a body, and a failure after the end is ignored).
EMPTY_BODY = BodyStream(lambda stop: None)
EMPTY_BODY.feed_eof()
