"""``ClusterManager``: owns every running upstream — cluster, source, client, checker, route.

One verb, ``apply``: given the upstreams a configuration names, it makes the running set
match, changing only what differs (``diff.upstream_pieces``). A piece that is the same
keeps its part and that part's state: a retry policy changed leaves the breakers, the
ejections, the health verdicts and the pooled connections as they were, since every
endpoint's state is kept by its id. A new upstream is built and its discovery started; an
upstream that is gone leaves the route table first and is then retired: its in-flight
requests get up to ``drain_timeout`` to finish, then its source, checker and connections
are closed.

A part replaced while requests use it stays theirs: a request finishes on the stack (and
so the policies and client) it started with; a replaced client stops pooling at once and
is closed once the drain time has passed.

Invariants: ``clusters`` and ``sources`` are the live mappings (read by the admin listener
and the metrics at each look); a name is in ``running`` from ``apply`` until it is retired;
every task this manager starts is cancelled by ``retire`` or ``close``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from discovery.source import Source
from discovery.watch import Outage, OutageHook, served
from resilience.clock import Clock
from sidecar.cluster import Cluster
from sidecar.config.schema import Config, ConsulConfig, UpstreamConfig
from sidecar.control.diff import upstream_pieces
from sidecar.events import EventBus
from sidecar.health_check import HealthChecker, health_checker
from sidecar.pipeline.layers import Handler, LayerObserver
from sidecar.pipeline.stack import StackSettings, build_stack
from sidecar.pipeline.timeouts import TimeoutQueues
from sidecar.routing import Route
from sidecar.sources import build_source
from sidecar.transport.h1_client import H1Transport

log = logging.getLogger("pilotfish.clusters")

# How often a retiring cluster looks whether its last request has ended.
DRAIN_POLL = 0.05


@dataclass
class Running:
    """One upstream's running parts."""

    config: UpstreamConfig
    cluster: Cluster
    source: Source
    transport: H1Transport
    stack: Handler
    route: Route
    source_task: asyncio.Task[None] | None = None
    checker: HealthChecker | None = None
    checker_task: asyncio.Task[None] | None = None


class ClusterManager:
    def __init__(
        self,
        *,
        clock: Clock,
        rng: random.Random,
        events: EventBus,
        observer: LayerObserver,
    ) -> None:
        self._clock = clock
        self._rng = rng
        self._events = events
        self._observer = observer
        self._timeouts = TimeoutQueues()
        self.running: dict[str, Running] = {}
        self.clusters: dict[str, Cluster] = {}
        self.sources: dict[str, Source] = {}
        self.health_checkers: dict[str, HealthChecker] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._consul: ConsulConfig | None = None  # what the running sources were built with

    # -- apply ---------------------------------------------------------------------------

    def apply(
        self, upstreams: Sequence[UpstreamConfig], config: Config, *, started: bool = True
    ) -> tuple[list[str], list[str]]:
        """Make the running upstreams those of ``upstreams``: build the new ones, change
        what differs in the others. Returns the names added and removed; the removed ones
        are no longer in ``clusters`` but still run until ``retire``. With ``started`` the
        new parts' tasks are started too."""
        wanted = {u.name: u for u in upstreams}
        added, removed = [], []
        consul_changed = self._consul is not None and self._consul != config.consul
        for name, upstream in wanted.items():
            running = self.running.get(name)
            if running is None:
                self._build(upstream, config, started=started)
                added.append(name)
            elif running.config != upstream or (consul_changed and upstream.discovery.consul):
                self._change(running, upstream, config, consul_changed, started=started)
        for name in [n for n in self.running if n not in wanted]:
            removed.append(name)
            self.clusters.pop(name, None)
            self.sources.pop(name, None)
            self.health_checkers.pop(name, None)
        self._consul = config.consul
        return added, removed

    def _build(self, upstream: UpstreamConfig, config: Config, *, started: bool) -> None:
        cluster = Cluster.from_config(
            upstream, clock=self._clock, rng=self._rng, events=self._events
        )
        source = build_source(upstream, config, rng=self._rng)
        source.watch.subscribe(cluster.update)
        source.watch.on_outage = self._outage_events(cluster)
        transport = _transport(upstream)
        stack = self._stack(cluster, transport, upstream)
        running = Running(
            upstream, cluster, source, transport, stack, Route(cluster, stack, upstream)
        )
        self.running[upstream.name] = running
        self.clusters[upstream.name] = cluster
        self.sources[upstream.name] = source
        running.checker = health_checker(cluster, rng=self._rng)
        if running.checker is not None:
            self.health_checkers[upstream.name] = running.checker
        if started:
            self._start(running, source=True, checker=True)
        self._events.publish("cluster_added", cluster=upstream.name)

    def _change(
        self,
        running: Running,
        upstream: UpstreamConfig,
        config: Config,
        consul_changed: bool,
        *,
        started: bool,
    ) -> None:
        old = running.config
        pieces = upstream_pieces(old, upstream, consul_changed=consul_changed)
        cluster = running.cluster
        cluster.config = upstream
        restart_checker = False
        if "discovery" in pieces:
            self._stop_source(running)
            running.source = build_source(upstream, config, rng=self._rng)
            running.source.watch.subscribe(cluster.update)
            running.source.watch.on_outage = self._outage_events(cluster)
            self.sources[upstream.name] = running.source
            if started:
                self._start(running, source=True, checker=False)
        if "breakers" in pieces:
            cluster.set_breakers(upstream.circuit_breakers.endpoint)
        if "outlier_detection" in pieces:
            cluster.set_outlier(upstream.outlier_detection)
            restart_checker = True  # whether a passing probe ends an ejection may differ
        if "health_check" in pieces:
            cluster.set_health(upstream.health_check)
            restart_checker = True
        if "retries" in pieces and old.retries.budget != upstream.retries.budget:
            cluster.set_budget(upstream.retries.budget)
        if "limits" in pieces:
            cluster.set_limits(upstream.circuit_breakers.max_requests)
        if "panic_threshold" in pieces:
            cluster.set_panic_threshold(upstream.panic_threshold)
        if "balancer" in pieces:
            cluster.set_balancer(upstream.balancer)
        if "connections" in pieces:
            old_transport, running.transport = running.transport, _transport(upstream)
            self._later(_retire_transport(old_transport, config.drain_timeout))
        if restart_checker:
            self._stop_checker(running)
            self.health_checkers.pop(upstream.name, None)
            running.checker = health_checker(cluster, rng=self._rng)
            if running.checker is not None:
                self.health_checkers[upstream.name] = running.checker
                if started:
                    self._start(running, source=False, checker=True)
        running.config = upstream
        running.stack = self._stack(cluster, running.transport, upstream)
        running.route = Route(cluster, running.stack, upstream)
        if pieces:
            self._events.publish("cluster_changed", cluster=upstream.name, detail=", ".join(pieces))

    def _outage_events(self, cluster: Cluster) -> OutageHook:
        """A discovery outage of ``cluster``'s source, told as an event (logged once)."""

        def tell(outage: Outage) -> None:
            # What the cluster routes with: a replaced source's outage keeps the endpoints
            # its predecessor found.
            snapshot = cluster.snapshot
            count = None if snapshot is None else len(snapshot)
            if outage.failing:
                detail = f"{outage.error}; {served(count)}"
                self._events.publish("discovery_failing", cluster=cluster.name, detail=detail)
            else:
                n = count or 0
                detail = f"{n} endpoint" if n == 1 else f"{n} endpoints"
                self._events.publish("discovery_recovered", cluster=cluster.name, detail=detail)

        return tell

    def _stack(self, cluster: Cluster, transport: H1Transport, upstream: UpstreamConfig) -> Handler:
        return build_stack(
            cluster,
            transport,
            StackSettings.of(upstream, cluster.budget),
            clock=self._clock,
            rng=self._rng,
            observer=self._observer,
            timeouts=self._timeouts,
        )

    # -- tasks ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the tasks of everything built with ``started=False``."""
        for running in self.running.values():
            self._start(running, source=running.source_task is None, checker=True)

    def start_checkers(self) -> None:
        for running in self.running.values():
            self._start(running, source=False, checker=True)

    def _start(self, running: Running, *, source: bool, checker: bool) -> None:
        name = running.cluster.name
        if source and running.source_task is None:
            running.source_task = asyncio.create_task(
                running.source.run(), name=f"discovery:{name}"
            )
        if checker and running.checker is not None and running.checker_task is None:
            running.checker_task = asyncio.create_task(running.checker.run(), name=f"health:{name}")

    def _stop_source(self, running: Running) -> None:
        task, running.source_task = running.source_task, None
        source = running.source
        if task is not None:
            task.cancel()
        self._later(_close_source(task, source))

    def _stop_checker(self, running: Running) -> None:
        task, running.checker_task = running.checker_task, None
        if task is not None:
            task.cancel()

    def _later(self, work: object) -> None:
        task = asyncio.ensure_future(work)  # type: ignore[arg-type]
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- readiness, retirement, shutdown --------------------------------------------------

    async def wait_ready(self, names: Iterable[str], timeout: float) -> list[str]:
        """Wait (up to ``timeout``) for the first snapshot of each named upstream; the
        names still without one."""
        running = [self.running[n] for n in names if n in self.running]
        waits = [r.source.watch.wait_ready() for r in running if not r.source.watch.ready]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.gather(*waits)
                # A large ring is built over many turns of the loop: route to it once in use.
                await asyncio.gather(*(r.cluster.balanced() for r in running))
        return [r.cluster.name for r in running if not r.source.watch.ready]

    def retire(self, names: Iterable[str], drain_timeout: float) -> None:
        """Drain and close the named upstreams in the background (they are unrouted)."""
        for name in names:
            running = self.running.pop(name, None)
            if running is not None:
                self._later(self._drain_and_close(running, drain_timeout))
                self._events.publish("cluster_removed", cluster=name)

    async def _drain_and_close(self, running: Running, drain_timeout: float) -> None:
        limit = running.cluster.limit
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain_timeout):
                while limit.in_flight:
                    await asyncio.sleep(DRAIN_POLL)
        await self._close(running)

    async def _close(self, running: Running) -> None:
        self._stop_checker(running)
        task, running.source_task = running.source_task, None
        if task is not None:
            task.cancel()
        await _close_source(task, running.source)
        await running.transport.close()

    async def close(self) -> None:
        """Stop everything now (the listeners have drained already)."""
        for running in list(self.running.values()):
            await self._close(running)
        self.running.clear()
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _transport(upstream: UpstreamConfig) -> H1Transport:
    limits = upstream.circuit_breakers
    return H1Transport(
        connect_timeout=upstream.timeouts.connect,
        idle_timeout=upstream.timeouts.idle,
        stream_idle_timeout=upstream.timeouts.stream_idle,
        max_connections=limits.max_connections,
        max_pending=limits.max_pending,
    )


async def _retire_transport(transport: H1Transport, drain_timeout: float) -> None:
    transport.retire()
    await asyncio.sleep(drain_timeout)  # the drain time requests in flight are given
    await transport.close()


async def _close_source(task: asyncio.Task[None] | None, source: Source) -> None:
    if task is not None:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    with contextlib.suppress(Exception):
        await source.close()
