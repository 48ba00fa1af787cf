"""``ListenerManager``: the sidecar's sockets, kept as they are unless the config moves them.

``bind`` opens the sockets a configuration names that are not open yet (a listener whose
address and port did not change keeps its socket and its connections), without accepting
on them: a reload that cannot bind fails before anything else changed. ``commit`` then
starts accepting on the new ones and stops the ones no longer wanted — they stop
accepting at once and drain their connections in the background — and sets the timeouts
and limits of every listener (read by connections as they go).

Invariants: a listener's name maps to one open server at a time once committed; a server
that was bound is either committed or closed again (``abort``); every server this manager
opened is stopped by ``stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from sidecar.config.schema import ListenersConfig
from sidecar.listener.h1_server import H1Server, Handler
from sidecar.listener.head_rules import Refusal


class StartError(Exception):
    """A listener cannot listen as configured; the message says why."""


@dataclass(frozen=True, slots=True)
class ListenerSpec:
    name: str  # "inbound", "egress", "admin" or "upstream:<name>"
    host: str
    port: int
    path: str  # where it is configured, for errors: "listeners.egress", "upstreams[1].listen"


@dataclass
class Listener:
    name: str
    server: H1Server
    address: str = ""
    port: int = 0
    spec: ListenerSpec | None = None


@dataclass
class Binding:
    """What ``bind`` opened and ``commit`` will put in place."""

    new: dict[str, Listener] = field(default_factory=dict)
    gone: list[str] = field(default_factory=list)


class ListenerManager:
    def __init__(
        self,
        make_handler: Callable[[str], Handler],
        *,
        on_refused: Callable[[str, Refusal], None] | None = None,
        on_overflow: Callable[[str], None] | None = None,
    ) -> None:
        self._make_handler = make_handler
        self._on_refused = on_refused
        self._on_overflow = on_overflow
        self.listeners: dict[str, Listener] = {}
        self._draining: set[asyncio.Task[None]] = set()

    async def bind(self, specs: list[ListenerSpec], settings: ListenersConfig) -> Binding:
        """Open (not yet serving) every socket of ``specs`` not open as specified already."""
        binding = Binding()
        wanted = {s.name: s for s in specs}
        try:
            for spec in specs:
                current = self.listeners.get(spec.name)
                if current is not None and current.spec == spec:
                    continue
                server = self._server(spec.name, settings)
                try:
                    host, port = await server.start(spec.host, spec.port, serve=False)
                except OSError as exc:  # in use, not an address of this host, unknown name
                    reason = exc.strerror or str(exc)
                    raise StartError(
                        f"{spec.path}: listener {spec.name}: cannot listen on "
                        f"{spec.host}:{spec.port}: {reason}"
                    ) from None
                binding.new[spec.name] = Listener(spec.name, server, host, port, spec)
        except BaseException:
            await self.abort(binding)
            raise
        binding.gone = [n for n in self.listeners if n not in wanted or n in binding.new]
        return binding

    async def abort(self, binding: Binding) -> None:
        for listener in binding.new.values():
            await listener.server.stop(0.0)

    async def commit(self, binding: Binding, settings: ListenersConfig, drain: float) -> None:
        for name in binding.gone:
            old = self.listeners.pop(name)
            self._drain(old.server, drain)
        for name, listener in binding.new.items():
            self.listeners[name] = listener
            await listener.server.serve()
        for listener in self.listeners.values():
            _configure(listener.server, settings)

    def _server(self, name: str, settings: ListenersConfig) -> H1Server:
        server = H1Server(
            self._make_handler(name),
            name=name,
            on_refused=self._on_refused,
            on_overflow=self._on_overflow,
        )
        _configure(server, settings)
        return server

    def _drain(self, server: H1Server, grace: float) -> None:
        task = asyncio.ensure_future(server.stop(grace))
        self._draining.add(task)
        task.add_done_callback(self._draining.discard)

    async def stop(self, names: list[str], grace: float) -> None:
        """Stop accepting on ``names`` and drain them together, up to ``grace``."""
        servers = [self.listeners[n].server for n in names if n in self.listeners]
        await asyncio.gather(*(s.stop(grace) for s in servers), return_exceptions=True)

    async def close(self) -> None:
        """Wait for listeners still draining after a reload (they end within their grace)."""
        for task in list(self._draining):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _configure(server: H1Server, settings: ListenersConfig) -> None:
    timeouts = settings.timeouts
    server.keepalive_timeout = timeouts.keepalive
    server.head_timeout = timeouts.request_headers
    server.body_timeout = timeouts.request_body_idle
    server.send_timeout = timeouts.send_idle
    server.tunnel_idle_timeout = timeouts.tunnel_idle
    server.max_connections = settings.max_connections
