"""``Sidecar``: builds clusters, sources and listeners from a ``Config`` and runs them.

Start: discovery watches (first snapshot awaited, bounded) → listeners → ready.
Stop: not ready → stop accepting → drain in-flight requests up to ``drain_timeout`` →
close transports and sources. Start/stop order is the only logic here; every part is built
by its own module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from discovery.errors import DiscoveryError
from discovery.source import Source
from resilience.clock import MONOTONIC, Clock
from sidecar.admin import AdminHandler, sidecar_routes
from sidecar.admin_access import warn_if_exposed
from sidecar.cluster import Cluster
from sidecar.config.schema import Config, UpstreamConfig
from sidecar.health_check import HealthChecker, health_checkers
from sidecar.listener.h1_server import H1Server, Handler
from sidecar.local_cluster import local_upstream
from sidecar.pipeline.stack import build_stack
from sidecar.proxy import ProxyHandler, Route, by_host, fixed
from sidecar.sources import build_source
from sidecar.telemetry.admin_routes import telemetry_routes
from sidecar.telemetry.telemetry import Telemetry
from sidecar.transport.h1_client import H1Transport

if TYPE_CHECKING:
    from discovery.consul import ConsulRegistration

log = logging.getLogger("pilotfish")


class StartError(Exception):
    """The sidecar cannot start as configured (a listener cannot bind); the message says why."""


@dataclass
class Listener:
    name: str
    server: H1Server
    address: str = ""
    port: int = 0


@dataclass
class SidecarState:
    ready: bool = False
    draining: bool = False
    listeners: dict[str, Listener] = field(default_factory=dict)


class Sidecar:
    def __init__(
        self, config: Config, *, clock: Clock = MONOTONIC, rng: random.Random | None = None
    ) -> None:
        self.config = config
        self.clock = clock
        self.rng = rng or random.Random()
        self.state = SidecarState()
        self.clusters: dict[str, Cluster] = {}
        self.sources: dict[str, Source] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.stack = build_stack(clock=clock, rng=self.rng)
        self.local: Cluster | None = None
        self.health_checkers: dict[str, HealthChecker] = {}
        self.registration: ConsulRegistration | None = None
        self.observer: Telemetry = Telemetry(config)

    # -- building ---------------------------------------------------------------------

    def _cluster(self, upstream: UpstreamConfig) -> Cluster:
        limits = upstream.circuit_breakers
        transport = H1Transport(
            connect_timeout=upstream.timeouts.connect,
            idle_timeout=upstream.timeouts.idle,
            stream_idle_timeout=upstream.timeouts.stream_idle,
            max_connections=limits.max_connections,
            max_pending=limits.max_pending,
        )
        cluster = Cluster(upstream, transport, clock=self.clock, rng=self.rng)
        source = build_source(upstream, self.config, rng=self.rng)
        source.watch.subscribe(cluster.update)
        self.clusters[upstream.name] = cluster
        self.sources[upstream.name] = source
        return cluster

    def build(self) -> None:
        """Makes the clusters and discovery sources the config names: no task, no socket."""
        cfg = self.config
        if cfg.listeners.inbound is not None:
            self.local = self._cluster(local_upstream(cfg.service))
        for upstream in cfg.upstreams:
            self._cluster(upstream)

    async def start(self) -> None:
        cfg = self.config
        self.build()
        self.observer.open(self)
        for name, source in self.sources.items():
            self._tasks.append(asyncio.create_task(source.run(), name=f"discovery:{name}"))
        await self._await_first_snapshots(cfg.discovery_timeout)
        # Probes start once endpoints are known; stop() cancels them with the other tasks.
        self.health_checkers = health_checkers(self.clusters.values(), rng=self.rng)
        for name, checker in self.health_checkers.items():
            self._tasks.append(asyncio.create_task(checker.run(), name=f"health:{name}"))
        await self._start_listeners()
        await self._register()
        self.state.ready = True
        log.info(
            "pilotfish ready: %s",
            ", ".join(
                f"{name}={lst.address}:{lst.port}" for name, lst in self.state.listeners.items()
            ),
        )

    async def _await_first_snapshots(self, timeout: float) -> None:
        waits = [s.watch.wait_ready() for s in self.sources.values()]
        if not waits:
            return
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*waits)
                # a large ring is built over many turns of the loop: serve once it is in use
                await asyncio.gather(*(c.balanced() for c in self.clusters.values()))
        except TimeoutError:
            missing = [n for n, s in self.sources.items() if not s.watch.ready]
            if not missing:  # only a ring still being built: picks wait for it, not the start
                return
            log.warning(
                "no endpoints yet for %s after %.1fs; not ready until they arrive",
                ", ".join(missing),
                timeout,
            )

    async def _start_listeners(self) -> None:
        cfg = self.config
        if self.local is not None and cfg.listeners.inbound is not None:
            handler = ProxyHandler(
                "inbound",
                fixed(Route(self.local)),
                self.stack,
                observer=self.observer,
                report_attempts=False,
            )
            await self._serve(
                "inbound", handler, cfg.listeners.inbound.address, cfg.listeners.inbound.port
            )
        routes: dict[str, Route] = {}
        for up in cfg.upstreams:
            route = Route(self.clusters[up.name])
            for host in (up.name, *up.hosts):
                routes[host.lower()] = route
            if up.listen is not None:
                name = f"upstream:{up.name}"
                handler = ProxyHandler(name, fixed(route), self.stack, observer=self.observer)
                await self._serve(name, handler, up.listen.host, up.listen.port)
        if cfg.listeners.egress is not None:
            handler = ProxyHandler("egress", by_host(routes), self.stack, observer=self.observer)
            await self._serve(
                "egress", handler, cfg.listeners.egress.address, cfg.listeners.egress.port
            )
        admin = AdminHandler({**sidecar_routes(self), **telemetry_routes(self.observer)})
        await self._serve("admin", admin, cfg.listeners.admin.address, cfg.listeners.admin.port)
        warn_if_exposed(*self.address("admin"), admin.routes)

    async def _serve(self, name: str, handler: Handler, host: str, port: int) -> None:
        listeners = self.config.listeners
        timeouts = listeners.timeouts
        server = H1Server(
            handler,
            name=name,
            keepalive_timeout=timeouts.keepalive,
            head_timeout=timeouts.request_headers,
            body_timeout=timeouts.request_body_idle,
            send_timeout=timeouts.send_idle,
            tunnel_idle_timeout=timeouts.tunnel_idle,
            max_connections=listeners.max_connections,
            on_refused=self.observer.listener_refused,
            on_overflow=self.observer.listener_overflow,
        )
        try:
            bound_host, bound_port = await server.start(host, port)
        except OSError as exc:  # in use, not an address of this host, name not found
            reason = exc.strerror or str(exc)
            raise StartError(f"listener {name}: cannot listen on {host}:{port}: {reason}") from None
        self.state.listeners[name] = Listener(name, server, bound_host, bound_port)

    async def _register(self) -> None:
        if not self.config.service.register or "inbound" not in self.state.listeners:
            return
        from sidecar.registration import build_registration  # only sidecars that register

        self.registration = build_registration(self.config, self.address("inbound"))
        try:
            async with asyncio.timeout(5):
                await self.registration.register()
        except (DiscoveryError, TimeoutError) as exc:
            # run() keeps trying: the agent may come up after us.
            log.warning("cannot register %s in consul yet: %s", self.registration.service_id, exc)
        self._tasks.append(asyncio.create_task(self.registration.run(), name="consul:register"))

    async def _deregister(self) -> None:
        reg = self.registration
        if reg is None:
            return
        try:
            async with asyncio.timeout(5):
                await reg.deregister(maintenance="pilotfish is shutting down")
        except (DiscoveryError, TimeoutError) as exc:
            log.warning("cannot deregister %s from consul: %s", reg.service_id, exc)
        finally:
            await reg.close()

    # -- stopping -------------------------------------------------------------------

    async def stop(self) -> None:
        self.state.ready = False
        self.state.draining = True
        # Callers learn from Consul first, then in-flight requests drain.
        await self._deregister()
        proxies = [lst for n, lst in self.state.listeners.items() if n != "admin"]
        # Stop accepting and drain in-flight requests on every proxy listener at once.
        grace = self.config.drain_timeout
        await asyncio.gather(*(lst.server.stop(grace) for lst in proxies), return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for source in self.sources.values():
            with contextlib.suppress(Exception):
                await source.close()
        for cluster in self.clusters.values():
            await cluster.transport.close()
        admin = self.state.listeners.get("admin")
        if admin is not None:
            await admin.server.stop(1.0)
        await self.observer.close()  # flushes ended spans and pending access-log lines
        log.info("pilotfish stopped")

    def address(self, name: str) -> tuple[str, int]:
        lst = self.state.listeners[name]
        return lst.address, lst.port

    @property
    def ready(self) -> bool:
        return self.state.ready and all(s.watch.ready for s in self.sources.values())
