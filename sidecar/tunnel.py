"""``Tunnel``: the bytes of an upgraded connection (WebSocket), relayed both ways.

Once the upstream answered ``101 Switching Protocols`` the two connections stop speaking
HTTP: whatever one side sends is written to the other, untouched. The two protocols
(the listener's connection and the transport's) hand their socket events here.

Invariants:
- flow control: while one side's write buffer is above its high-water mark (its
  ``pause_writing``), the other side is not read, so a slow reader holds a bounded amount
  of memory here whatever the other side sends;
- a half-close is passed on (``write_eof``); the tunnel ends when both sides have ended
  their halves, when either connection is lost (the other is closed after its pending
  bytes are written), when no byte moved for ``idle_timeout`` seconds, or on ``close``;
- it ends once: ``wait`` returns why (``closed``, ``idle_timeout``, ``shutdown``), and the
  byte counts are final from then on.
"""

from __future__ import annotations

import asyncio


class Tunnel:
    __slots__ = (
        "_client",
        "_client_eof",
        "_done",
        "_idle_timeout",
        "_last",
        "_loop",
        "_timer",
        "_upstream",
        "_upstream_eof",
        "bytes_in",
        "bytes_out",
    )

    def __init__(
        self,
        client: asyncio.Transport,
        upstream: asyncio.Transport,
        *,
        idle_timeout: float,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._client = client
        self._upstream = upstream
        self._loop = loop
        self._idle_timeout = idle_timeout  # 0: none
        self._last = loop.time()
        self._timer: asyncio.TimerHandle | None = None
        self._client_eof = self._upstream_eof = False
        self._done: asyncio.Future[str] = loop.create_future()
        self.bytes_in = 0  # client -> upstream
        self.bytes_out = 0  # upstream -> client
        if idle_timeout:
            self._timer = loop.call_at(self._last + idle_timeout, self._check_idle)

    @property
    def closed(self) -> bool:
        return self._done.done()

    def start(self, from_client: bytes, from_upstream: bytes) -> None:
        """Relay what either side sent before the tunnel existed (behind the heads)."""
        if from_client:
            self.from_client(from_client)
        if from_upstream:
            self.from_upstream(from_upstream)

    # -- bytes -------------------------------------------------------------------------

    def from_client(self, data: bytes) -> None:
        if self._done.done():
            return
        self.bytes_in += len(data)
        self._last = self._loop.time()
        self._upstream.write(data)

    def from_upstream(self, data: bytes) -> None:
        if self._done.done():
            return
        self.bytes_out += len(data)
        self._last = self._loop.time()
        self._client.write(data)

    # -- flow control ------------------------------------------------------------------

    def client_writing(self, paused: bool) -> None:
        """The client's write buffer crossed a mark: stop or resume reading upstream."""
        _reading(self._upstream, not paused)

    def upstream_writing(self, paused: bool) -> None:
        _reading(self._client, not paused)

    # -- ends --------------------------------------------------------------------------

    def client_eof(self) -> None:
        self._client_eof = True
        self._pass_eof(self._upstream, self._upstream_eof)

    def upstream_eof(self) -> None:
        self._upstream_eof = True
        self._pass_eof(self._client, self._client_eof)

    def _pass_eof(self, other: asyncio.Transport, other_ended: bool) -> None:
        if other_ended:
            self.close()
        elif other.can_write_eof() and not other.is_closing():
            other.write_eof()
        else:
            self.close()

    def lost(self) -> None:
        """One of the connections is gone."""
        self.close()

    def close(self, reason: str = "closed") -> None:
        if self._done.done():
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for transport in (self._client, self._upstream):
            if not transport.is_closing():
                _reading(transport, True)  # a paused transport would never see its close
                transport.close()  # after the bytes still buffered for it
        self._done.set_result(reason)

    async def wait(self) -> str:
        return await asyncio.shield(self._done)

    def _check_idle(self) -> None:
        self._timer = None
        if self._done.done():
            return
        due = self._last + self._idle_timeout
        if self._loop.time() >= due:
            self.close("idle_timeout")
        else:
            self._timer = self._loop.call_at(due, self._check_idle)


def _reading(transport: asyncio.Transport, on: bool) -> None:
    if transport.is_closing():
        return
    if on:
        if not transport.is_reading():
            transport.resume_reading()
    elif transport.is_reading():
        transport.pause_reading()
