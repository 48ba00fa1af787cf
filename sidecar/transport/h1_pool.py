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
- At most ``max_connections`` are open or opening (Envoy's per-host ``max_connections``).
  A request that finds none free waits for one — it is then *pending*, and the cluster's
  ``PendingLimit`` (``max_pending``) bounds how many may wait; past it the request is
  refused at once with ``Overflow`` (a local rejection: it never counts against the
  endpoint). A connection checked in goes straight to the oldest waiter.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from resilience.limits import PendingLimit
from sidecar.pipeline.errors import ConnectFailure, Overflow
from sidecar.transport.h1_protocol import H1Connection

_EARLY = 0.001  # how early a loop timer may fire (clock and timer resolution)


class EndpointPool:
    __slots__ = (
        "_all",
        "_closed",
        "_connect_timeout",
        "_connecting",
        "_emptied",
        "_idle",
        "_idle_timeout",
        "_loop",
        "_timer",
        "_waiters",
        "host",
        "label",
        "max_connections",
        "port",
        "stream_idle_timeout",
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
        max_connections: int = 1024,
        stream_idle_timeout: float = 0.0,
    ) -> None:
        self.host = host
        self.port = port
        self.label = label
        # Longest silence within a response body before the exchange fails; 0: none.
        self.stream_idle_timeout = stream_idle_timeout
        self._connect_timeout = connect_timeout or None
        self._idle_timeout = idle_timeout
        self._loop = loop
        self._idle: deque[H1Connection] = deque()  # oldest left, newest right
        self._all: set[H1Connection] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._emptied: asyncio.Future[None] | None = None
        self.max_connections = max_connections
        self._connecting = 0
        # Requests waiting for a connection: each gets one (or None: "a slot is free,
        # connect") through its future.
        self._waiters: deque[asyncio.Future[H1Connection | None]] = deque()

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

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self, pending: PendingLimit) -> tuple[H1Connection, bool]:
        """A connection for one exchange, and whether it was reused from the pool."""
        while True:
            conn = self.checkout()
            if conn is not None:
                return conn, True
            if len(self._all) + self._connecting < self.max_connections:
                return await self.connect(), False
            if not pending.try_acquire():
                raise Overflow(
                    f"{self.label}: {self.max_connections} connections busy and "
                    f"{pending.limit} requests already waiting for one"
                )
            waiter: asyncio.Future[H1Connection | None] = self._loop.create_future()
            self._waiters.append(waiter)
            try:
                handed = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and waiter.result() is not None:
                    self.checkin(waiter.result())  # handed over as we were cancelled
                raise
            finally:
                pending.release()
                if not waiter.done():
                    waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            if handed is not None:
                return handed, True

    def _hand_over(self, conn: H1Connection | None) -> bool:
        """Give ``conn`` (or a free slot) to the oldest live waiter; False if none."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return True
        return False

    async def connect(self) -> H1Connection:
        conn = H1Connection(self, self._loop)
        self._connecting += 1
        try:
            async with asyncio.timeout(self._connect_timeout):
                await self._loop.create_connection(lambda: conn, self.host, self.port)
        except TimeoutError:
            raise ConnectFailure(f"connect to {self.label} timed out") from None
        except OSError as exc:
            raise ConnectFailure(f"cannot connect to {self.label}: {exc}") from None
        finally:
            self._connecting -= 1
            if len(self._all) + self._connecting < self.max_connections and self._waiters:
                self._hand_over(None)  # a failed connect frees its slot for a waiter
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
        if self._waiters and self._hand_over(conn):
            return
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
        if self._waiters and len(self._all) + self._connecting < self.max_connections:
            self._hand_over(None)
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

    def retire(self) -> None:
        """Pool nothing from now on: idle connections close now, busy ones when done."""
        self._idle_timeout = 0.0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._expire_all()

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
