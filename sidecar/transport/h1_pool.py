"""Keep-alive connections to one endpoint (``host:port``): connect, check out, check in, expire.

Invariants:
- Idle connections are reused newest first; a connection idle for ``idle_timeout`` seconds
  or longer is never handed out (checked on checkout) and is closed by one timer per pool,
  set for the oldest idle connection, so sockets do not linger after traffic stops.
- Only a ``reusable`` connection is checked in; anything else is closed. With
  ``idle_timeout`` 0 nothing is pooled.
- A connection the upstream closes while idle leaves the pool at once.
- Connect failures (refused, unreachable, unresolvable, ``connect_timeout`` elapsed) are
  raised as ``ConnectFailure``.
"""

from __future__ import annotations

import asyncio
from collections import deque

from sidecar.pipeline.errors import ConnectFailure
from sidecar.transport.h1_protocol import H1Connection

_EARLY = 0.001  # how early a loop timer may fire (clock and timer resolution)


class EndpointPool:
    __slots__ = (
        "_all",
        "_closed",
        "_connect_timeout",
        "_emptied",
        "_idle",
        "_idle_timeout",
        "_loop",
        "_timer",
        "host",
        "label",
        "port",
    )

    def __init__(
        self,
        host: str,
        port: int,
        label: str,
        *,
        connect_timeout: float,
        idle_timeout: float,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.host = host
        self.port = port
        self.label = label
        self._connect_timeout = connect_timeout or None
        self._idle_timeout = idle_timeout
        self._loop = loop
        self._idle: deque[H1Connection] = deque()  # oldest left, newest right
        self._all: set[H1Connection] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._emptied: asyncio.Future[None] | None = None

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    @property
    def open_count(self) -> int:
        return len(self._all)

    def idle_connections(self) -> tuple[H1Connection, ...]:
        """Oldest first."""
        return tuple(self._idle)

    def checkout(self) -> H1Connection | None:
        idle = self._idle
        while idle:
            conn = idle.pop()
            conn.in_pool = False
            if self._loop.time() - conn.idle_since >= self._idle_timeout:
                # The newest has expired, so have all the others.
                conn.close()
                self._expire_all()
                return None
            transport = conn.transport
            if transport is not None and not transport.is_closing():
                return conn
        return None

    async def connect(self) -> H1Connection:
        conn = H1Connection(self, self._loop)
        try:
            async with asyncio.timeout(self._connect_timeout):
                await self._loop.create_connection(lambda: conn, self.host, self.port)
        except TimeoutError:
            raise ConnectFailure(f"connect to {self.label} timed out") from None
        except OSError as exc:
            raise ConnectFailure(f"cannot connect to {self.label}: {exc}") from None
        if self._closed:
            conn.close()
            raise ConnectFailure(f"the pool for {self.label} is closed")
        self._all.add(conn)
        return conn

    def checkin(self, conn: H1Connection) -> None:
        if self._closed or self._idle_timeout <= 0 or not conn.reusable:
            conn.close()  # before finish(): an unfinished exchange is aborted, not flushed
            conn.finish()
            return
        conn.finish()
        conn.idle_since = now = self._loop.time()
        conn.in_pool = True
        self._idle.append(conn)
        if self._timer is None:
            self._timer = self._loop.call_at(now + self._idle_timeout, self._expire)

    def discard(self, conn: H1Connection) -> None:
        """The connection is gone (called from ``connection_lost``)."""
        self._all.discard(conn)
        if conn.in_pool:
            conn.in_pool = False
            self._idle.remove(conn)
        if not self._all and self._emptied is not None and not self._emptied.done():
            self._emptied.set_result(None)

    def _expire(self) -> None:
        self._timer = None
        idle = self._idle
        horizon = self._loop.time() + _EARLY - self._idle_timeout
        while idle and idle[0].idle_since <= horizon:
            conn = idle.popleft()
            conn.in_pool = False
            conn.close()
        if idle:
            self._timer = self._loop.call_at(idle[0].idle_since + self._idle_timeout, self._expire)

    def _expire_all(self) -> None:
        while self._idle:
            conn = self._idle.popleft()
            conn.in_pool = False
            conn.close()

    async def close(self) -> None:
        """Close every connection, idle or busy, and wait (briefly) until they are gone."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._expire_all()
        for conn in list(self._all):
            conn.close()
        if self._all:
            self._emptied = self._loop.create_future()
            try:
                async with asyncio.timeout(1.0):
                    await self._emptied
            except TimeoutError:
                pass  # closing sockets are the loop's business from here
