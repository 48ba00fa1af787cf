"""``H1Server``: a proxy listener's socket, its connections, their limits and a graceful stop.

Each accepted connection is an ``H1Connection`` (parsing and serving) that answers through
the server's handler. The server holds what every connection shares: the handler, the
timeouts (defaults as nginx's: head and body 60 s, keep-alive 75 s, send 60 s), and the
cap on open connections (Envoy's listener ``max_connections``; a connection beyond it is
closed as soon as it is accepted, counted, and the first of a run logged once).

Stop: no longer accept, close idle connections, let requests in flight (and tunnels)
finish within the grace period, then close tunnels cleanly and cut what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from sidecar.listener.h1_connection import DRAIN_LIMIT, H1Connection, Handler
from sidecar.listener.head_rules import Refusal
from sidecar.listener.request_parser import MAX_FIELD, MAX_HEAD, MAX_HEADERS, MAX_URL

__all__ = [
    "DRAIN_LIMIT",
    "MAX_FIELD",
    "MAX_HEAD",
    "MAX_HEADERS",
    "MAX_URL",
    "H1Connection",
    "H1Server",
    "Handler",
]

log = logging.getLogger("pilotfish.listener")

KEEPALIVE_TIMEOUT = 75.0
HEAD_TIMEOUT = 60.0  # a request's line and headers must arrive within this (nginx: 60 s)
BODY_TIMEOUT = 60.0  # longest silence within a request body being read (nginx: 60 s)
SEND_TIMEOUT = 60.0  # longest a client may leave our answer unread (nginx: 60 s)
TUNNEL_IDLE_TIMEOUT = 300.0  # an upgraded connection moving no byte (Envoy: 5 min)
MAX_CONNECTIONS = 4096


class H1Server:
    def __init__(
        self,
        handler: Handler,
        *,
        name: str = "",
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
        head_timeout: float = HEAD_TIMEOUT,
        body_timeout: float = BODY_TIMEOUT,
        send_timeout: float = SEND_TIMEOUT,
        tunnel_idle_timeout: float = TUNNEL_IDLE_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        on_refused: Callable[[str, Refusal], None] | None = None,
        on_overflow: Callable[[str], None] | None = None,
    ) -> None:
        self.handler = handler
        self.name = name
        self.keepalive_timeout = keepalive_timeout
        self.head_timeout = head_timeout
        self.body_timeout = body_timeout
        self.send_timeout = send_timeout
        self.tunnel_idle_timeout = tunnel_idle_timeout
        self.max_connections = max_connections
        self._on_refused = on_refused
        self._on_overflow = on_overflow
        self.connections: set[H1Connection] = set()
        self.overflows = 0
        self._full = False  # at the cap since the last log line said so
        self.closing = False
        self._server: asyncio.base_events.Server | None = None

    # -- what connections report --------------------------------------------------------

    def admit(self, conn: H1Connection) -> bool:
        """Whether a new connection may stay (under the cap)."""
        if len(self.connections) < self.max_connections:
            self.connections.add(conn)
            return True
        self.overflows += 1
        if not self._full:
            self._full = True
            log.warning(
                "listener %s has %d connections open, its max_connections: "
                "new connections are closed until some end",
                self.name or "?",
                self.max_connections,
            )
        if self._on_overflow is not None:
            self._on_overflow(self.name)
        return False

    def forget(self, conn: H1Connection) -> None:
        self.connections.discard(conn)
        if self._full and len(self.connections) < self.max_connections * 0.9:
            self._full = False
            log.info("listener %s accepts connections again", self.name or "?")

    def refused(self, refusal: Refusal) -> None:
        if self._on_refused is not None:
            self._on_refused(self.name, refusal)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, host: str, port: int, *, serve: bool = True) -> tuple[str, int]:
        """Bind (and with ``serve`` start accepting); the address actually bound."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: H1Connection(self),
            host,
            port,
            reuse_address=True,
            backlog=1024,
            start_serving=serve,
        )
        sockname = self._server.sockets[0].getsockname()
        return sockname[0], sockname[1]

    async def serve(self) -> None:
        """Start accepting on a server bound with ``serve=False``."""
        if self._server is not None and not self._server.is_serving():
            await self._server.start_serving()

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
                if conn.tunnel is not None:
                    conn.tunnel.close("shutdown")  # both halves end with a FIN, not a reset
                elif conn.transport is not None:
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
