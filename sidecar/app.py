"""``Sidecar``: the one owner of the running configuration, and the order things happen in.

Start is ``apply`` of the configuration onto an empty sidecar, then the Consul
registration; then readiness is told (``ReadinessLog``, again each time ``/ready`` turns)
and the history of the admin page's charts is sampled from then on. A reload (``reload``)
is ``apply`` again with the file read anew. ``apply``:

1. opens the sockets of listeners that are new or moved, not yet accepting (a reload that
   cannot bind stops here, having changed nothing);
2. has the ``ClusterManager`` build new upstreams and change what differs in the others;
3. waits (up to ``discovery_timeout``) for the first endpoints of the new upstreams;
4. swaps the route table in one step (requests in flight finish on the old one);
5. starts accepting on the new listeners and drains the ones gone;
6. retires the upstreams gone (their in-flight requests drain, up to ``drain_timeout``);
7. brings telemetry, the log level and the Consul registration in line.

Stop: not ready → deregister → stop accepting → drain in-flight requests up to
``drain_timeout`` → close clusters → stop the admin listener → flush telemetry.
Every part is built by its own module; the admin listener and telemetry read the sidecar
through narrow views (``clusters``, ``sources``, ``ready``, ``events``), never back.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from discovery.errors import DiscoveryError
from discovery.source import Source
from resilience.clock import MONOTONIC, Clock
from sidecar.admin import AdminHandler, sidecar_routes
from sidecar.admin_access import warn_if_exposed
from sidecar.cluster import Cluster
from sidecar.config.load import redacted
from sidecar.config.schema import Config, UpstreamConfig
from sidecar.control.clusters import ClusterManager
from sidecar.control.diff import config_delta
from sidecar.control.listeners import Listener, ListenerManager, ListenerSpec, StartError
from sidecar.control.reload import Reloader, ReloadOutcome
from sidecar.events import EventBus
from sidecar.health_check import HealthChecker
from sidecar.listener.h1_server import Handler
from sidecar.local_cluster import LOCAL_CLUSTER, local_upstream
from sidecar.proxy import ProxyHandler
from sidecar.readiness import ReadinessLog, not_ready_because
from sidecar.routing import Route, Router, RouteTable, Routing, by_host, fixed
from sidecar.telemetry.admin_routes import telemetry_routes
from sidecar.telemetry.history import History
from sidecar.telemetry.telemetry import Telemetry

if TYPE_CHECKING:
    from discovery.consul import ConsulRegistration

__all__ = ["Listener", "Sidecar", "StartError"]

log = logging.getLogger("pilotfish")


@dataclass
class SidecarState:
    ready: bool = False
    draining: bool = False
    listeners: dict[str, Listener] = field(default_factory=dict)  # the manager's, by name


class Sidecar:
    def __init__(
        self,
        config: Config,
        *,
        clock: Clock = MONOTONIC,
        rng: random.Random | None = None,
        config_path: str | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.rng = rng or random.Random()
        self.state = SidecarState()
        self.events = EventBus()
        self.observer: Telemetry = Telemetry(config)
        self.manager = ClusterManager(
            clock=clock, rng=self.rng, events=self.events, observer=self.observer
        )
        self.routing = Routing()
        self.listener_manager = ListenerManager(
            self._handler,
            on_refused=self.observer.listener_refused,
            on_overflow=self.observer.listener_overflow,
        )
        self.state.listeners = self.listener_manager.listeners
        self.registration: ConsulRegistration | None = None
        self._registration_task: asyncio.Task[None] | None = None
        self.version = 0
        self.config_hash = ""
        self.loaded_at = 0.0
        self._applied: Config | None = None
        self.reloader = (
            Reloader(config_path, self.apply, self.events) if config_path is not None else None
        )
        self._routed: tuple[str, ...] = ()  # the upstreams of the route table in use
        self.history = History(self.observer.metrics, lambda: self.clusters, self.events)
        self._history_task: asyncio.Task[None] | None = None
        self.readiness_log = ReadinessLog(self.readiness, self.events, ready_detail=self._listening)

    # -- views (the admin listener and telemetry read these) --------------------------

    @property
    def clusters(self) -> dict[str, Cluster]:
        return self.manager.clusters

    @property
    def sources(self) -> dict[str, Source]:
        return self.manager.sources

    @property
    def health_checkers(self) -> dict[str, HealthChecker]:
        return self.manager.health_checkers

    @property
    def listeners(self) -> dict[str, Listener]:
        return self.listener_manager.listeners

    @property
    def ready(self) -> bool:
        return self.readiness() is None

    def readiness(self) -> str | None:
        """Why ``/ready`` answers 503 (``sidecar.readiness``), or None when it answers 200."""
        clusters = self.clusters
        waiting = (
            n for n in self._routed if (c := clusters.get(n)) is not None and c.snapshot is None
        )
        return not_ready_because(
            started=self.state.ready, draining=self.state.draining, waiting=waiting
        )

    @property
    def draining(self) -> bool:
        return self.state.draining

    def address(self, name: str) -> tuple[str, int]:
        listener = self.listeners[name]
        return listener.address, listener.port

    # -- building ---------------------------------------------------------------------

    def build(self) -> None:
        """Make the clusters and sources the config names: no task, no socket (a check
        that a configuration builds)."""
        self.manager.apply(self._upstreams(self.config), self.config, started=False)

    async def start(self) -> None:
        self.observer.open(self)
        self.history.prime()
        await self.apply(self.config)
        await self._register()
        self.state.ready = True
        self.readiness_log.started()
        self._history_task = asyncio.create_task(self.history.run(), name="history")

    def _listening(self) -> str:
        return ", ".join(f"{n}={lst.address}:{lst.port}" for n, lst in self.listeners.items())

    async def reload(self) -> ReloadOutcome:
        """Read the config file again and apply it (SIGHUP, ``POST /reload``)."""
        if self.reloader is None:
            return ReloadOutcome(False, "this sidecar was not started from a file")
        return await self.reloader.request()

    async def apply(self, config: Config) -> str:
        """Make the running sidecar the one ``config`` describes; what changed, in a line."""
        old = self._applied
        binding = await self.listener_manager.bind(self._listener_specs(config), config.listeners)
        try:
            added, removed = self.manager.apply(self._upstreams(config), config)
            missing = await self.manager.wait_ready(added, config.discovery_timeout)
            if missing:
                log.warning(
                    "no endpoints yet for %s after %.1fs; routed anyway, answering 503 "
                    "until they arrive",
                    ", ".join(missing),
                    config.discovery_timeout,
                )
        except BaseException:
            await self.listener_manager.abort(binding)
            raise
        self.routing.table = self._route_table(config)
        self._routed = tuple(u.name for u in self._upstreams(config))
        await self.listener_manager.commit(binding, config.listeners, config.drain_timeout)
        admin = binding.new.get("admin")
        if admin is not None:
            handler = admin.server.handler
            warn_if_exposed(admin.address, admin.port, getattr(handler, "routes", ()))
        self.manager.retire(removed, config.drain_timeout)
        self.config = config
        self._applied = config
        summary = config_delta(old, config).summary() if old is not None else "started"
        if old is not None:
            await self._follow(old, config)
        self.version += 1
        self.config_hash = _hash(config)
        self.loaded_at = time.time()
        self.readiness_log.check()
        return summary

    async def _follow(self, old: Config, new: Config) -> None:
        """Bring what is not a cluster or a listener in line with ``new``."""
        if (old.tracing, old.access_log, old.service.name) != (
            new.tracing,
            new.access_log,
            new.service.name,
        ):
            await self.observer.reconfigure(new)
        if old.log_level != new.log_level:
            logging.getLogger().setLevel(new.log_level.upper())
        if old.service != new.service or old.consul != new.consul:
            await self._deregister()
            await self._register()

    def _upstreams(self, config: Config) -> list[UpstreamConfig]:
        upstreams = list(config.upstreams)
        if config.listeners.inbound is not None:
            upstreams.insert(0, local_upstream(config.service))
        return upstreams

    def _listener_specs(self, config: Config) -> list[ListenerSpec]:
        ls = config.listeners
        specs = []
        if ls.inbound is not None:
            specs.append(
                ListenerSpec("inbound", ls.inbound.address, ls.inbound.port, "listeners.inbound")
            )
        for i, up in enumerate(config.upstreams):
            if up.listen is not None:
                specs.append(
                    ListenerSpec(
                        f"upstream:{up.name}",
                        up.listen.host,
                        up.listen.port,
                        f"upstreams[{i}].listen",
                    )
                )
        if ls.egress is not None:
            specs.append(
                ListenerSpec("egress", ls.egress.address, ls.egress.port, "listeners.egress")
            )
        specs.append(ListenerSpec("admin", ls.admin.address, ls.admin.port, "listeners.admin"))
        return specs

    def _route_table(self, config: Config) -> RouteTable:
        running = self.manager.running
        routers: dict[str, Router] = {}
        if config.listeners.inbound is not None:
            routers["inbound"] = fixed(running[LOCAL_CLUSTER].route)
        by_name: dict[str, Route] = {}
        for up in config.upstreams:
            route = running[up.name].route
            for host in (up.name, *up.hosts):
                by_name[host.lower()] = route
            if up.listen is not None:
                routers[f"upstream:{up.name}"] = fixed(route)
        if config.listeners.egress is not None:
            routers["egress"] = by_host(by_name)
        return RouteTable(routers, self.routing.table.version + 1)

    def _handler(self, name: str) -> Handler:
        if name == "admin":
            admin = AdminHandler(
                {**sidecar_routes(self), **telemetry_routes(self.observer, self.history)}
            )
            return admin
        return ProxyHandler(
            name, self.routing, observer=self.observer, report_attempts=name != "inbound"
        )

    # -- registration -----------------------------------------------------------------

    async def _register(self) -> None:
        config = self.config
        if not config.service.register or "inbound" not in self.listeners:
            return
        from sidecar.registration import build_registration  # only sidecars that register

        self.registration = build_registration(config, self.address("inbound"))
        try:
            async with asyncio.timeout(5):
                await self.registration.register()
        except (DiscoveryError, TimeoutError) as exc:
            # run() keeps trying: the agent may come up after us.
            log.warning("cannot register %s in consul yet: %s", self.registration.service_id, exc)
        self._registration_task = asyncio.create_task(
            self.registration.run(), name="consul:register"
        )

    async def _deregister(self) -> None:
        reg, self.registration = self.registration, None
        task, self._registration_task = self._registration_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
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
        self.readiness_log.check()
        if self._history_task is not None:
            self._history_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._history_task
        if self.reloader is not None:
            await self.reloader.close()
        # Callers learn from Consul first, then in-flight requests drain.
        await self._deregister()
        proxies = [n for n in self.listeners if n != "admin"]
        # Stop accepting and drain in-flight requests on every proxy listener at once.
        await self.listener_manager.stop(proxies, self.config.drain_timeout)
        await self.listener_manager.close()
        await self.manager.close()
        await self.listener_manager.stop(["admin"], 1.0)
        await self.observer.close()  # flushes ended spans and pending access-log lines
        log.info("pilotfish stopped")


def _hash(config: Config) -> str:
    canonical = json.dumps(redacted(config), sort_keys=True, default=str).encode()
    return "sha256:" + hashlib.sha256(canonical).hexdigest()[:16]
