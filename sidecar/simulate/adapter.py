"""The one place a simulation touches the live sidecar's cluster, pipeline and proxy code.

Every decision on a simulated request is made by the classes the sidecar runs: ``Cluster``
(balancers and the ring, breakers, outlier detector, health table, panic), the stack from
``build_stack`` (deadline, retry policy, budget and backoff, pick, endpoint admission,
per-try timeout), the cluster's ``ConcurrencyLimit`` checked as ``ProxyHandler`` checks it,
the transport's per-endpoint connection cap with its cluster-wide ``PendingLimit``, and
``HealthChecker`` (probe schedule, timeouts, thresholds, un-ejection). Two things are
simulated: the network, as ``SimTransport`` (answers come from the fleet model after
virtual delays, and are raised as the errors a real transport raises), and the clock, the
loop's virtual time. Telemetry arrives through the pipeline's own ``Observer`` hooks.

Keeping every use of those modules here means a change to the pipeline's shape lands in
this file alone. What a simulated request skips is the HTTP work around the pipeline:
parsing, header rules, writing the answer; none of it decides anything measured here.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any, NoReturn

from multidict import CIMultiDict, CIMultiDictProxy

from discovery.model import Endpoint, EndpointSet
from discovery.watch import endpoint_watch
from resilience.limits import PendingLimit
from resilience.outcome import Outcome
from resilience.outlier import Ejected
from sidecar.cluster import Cluster, EndpointState
from sidecar.config.schema import UpstreamConfig
from sidecar.health_check import HealthChecker
from sidecar.pipeline.errors import ConnectFailure, Overflow, ProxyError, UpstreamReset
from sidecar.pipeline.exchange import Exchange
from sidecar.pipeline.stack import StackSettings, build_stack
from sidecar.pipeline.timeouts import TimeoutQueues
from sidecar.routing import Route
from sidecar.simulate.fleet import HANG, PORT, REFUSE, RESET, SimEndpoint, UpstreamFleet
from sidecar.simulate.stats import UpstreamStats
from sidecar.simulate.vloop import LoopClock
from sidecar.transport.base import ResponseEnd
from sidecar.transport.request_head import RequestHead

CLIENT_IP = "127.0.0.1"
_EMPTY_FIELDS: list[tuple[bytes, bytes]] = []


class SimResponse:
    """An answer's head; its (empty) body is there at once, so it ends as soon as it is
    read or released, and tells the attempt it watches as the live response does."""

    __slots__ = ("_end", "status")
    reason = ""
    fields = _EMPTY_FIELDS
    content_length = 0

    def __init__(self, status: int) -> None:
        self.status = status
        self._end: ResponseEnd | None = None

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        return CIMultiDictProxy(CIMultiDict())

    def watch(self, end: ResponseEnd) -> None:
        self._end = end

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        self._ended()
        return
        yield b""  # an async generator that yields nothing

    async def read(self) -> bytes:
        self._ended()
        return b""

    def release(self) -> None:
        self._ended()

    def close(self) -> None:
        end, self._end = self._end, None
        if end is not None:
            end.abandoned()

    def tunnel(self, start: object) -> NoReturn:
        raise UpstreamReset("the simulated fleet does not switch protocols")

    def _ended(self) -> None:
        end, self._end = self._end, None
        if end is not None:
            end.ended()


class SimTransport:
    """A ``Transport`` over the simulated fleet.

    With ``max_connections`` it caps attempts in flight per endpoint, as the connection pool
    does: an attempt finding every connection busy waits, and when ``max_pending`` attempts of
    the cluster already wait it is refused with ``Overflow``. Probes pass ``probes=True``:
    no cap, and the fleet answers them from its probe stream.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fleet: UpstreamFleet,
        *,
        max_connections: int | None = None,
        max_pending: int = 0,
        probes: bool = False,
    ) -> None:
        self._loop = loop
        self._fleet = fleet
        self._probes = probes
        self._max = max_connections
        self._pending = PendingLimit(max_pending)
        self._busy: dict[str, int] = {}
        self._waiters: dict[str, deque[asyncio.Future[None]]] = {}

    def _endpoint(self, endpoint: Endpoint) -> SimEndpoint:
        return self._fleet.by_id[endpoint.id]

    async def send(
        self, endpoint: Endpoint, head: RequestHead, body: Any, extra: bytes = b""
    ) -> SimResponse:
        sim = self._endpoint(endpoint)
        key = endpoint.id
        if self._max is not None:
            await self._acquire(key)
        try:
            what, delay, status = sim.answer(self._probes)
            if what == REFUSE:
                raise ConnectFailure(f"cannot connect to {key}: connection refused")
            if what == HANG:
                await self._loop.create_future()  # no answer, ever: only a timeout ends it
            if delay > 0:
                await asyncio.sleep(delay)
            if what == RESET:
                raise UpstreamReset(f"{key} closed the connection")
            return SimResponse(status)
        finally:
            if self._max is not None:
                self._release(key)

    async def connect(self, endpoint: Endpoint) -> None:
        """A TCP probe: only a refused connection fails it (a hung app still accepts)."""
        what, _, _ = self._endpoint(endpoint).answer(self._probes)
        if what == REFUSE:
            raise ConnectFailure(f"cannot connect to {endpoint.id}: connection refused")

    async def _acquire(self, key: str) -> None:
        busy = self._busy.get(key, 0)
        assert self._max is not None
        if busy < self._max:
            self._busy[key] = busy + 1
            return
        if not self._pending.try_acquire():
            raise Overflow(
                f"{key}: {self._max} connections busy and {self._pending.limit} requests "
                "already waiting for one"
            )
        waiter: asyncio.Future[None] = self._loop.create_future()
        waiters = self._waiters.setdefault(key, deque())
        waiters.append(waiter)
        try:
            await waiter  # handed a busy slot by _release
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release(key)  # handed over as it was cancelled: pass it on
            raise
        finally:
            self._pending.release()
            if waiter in waiters:
                waiters.remove(waiter)

    def _release(self, key: str) -> None:
        waiters = self._waiters.get(key)
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot goes to the oldest waiter
                return
        self._busy[key] -= 1

    async def close(self) -> None:
        return None


class _ProbeChecker(HealthChecker):
    """``HealthChecker`` with its network swapped for the fleet's: the schedule, timeouts,
    thresholds and un-ejection are the live code's; only the two probe sends differ."""

    def __init__(self, cluster: Cluster, *, rng: random.Random, network: SimTransport) -> None:
        config = cluster.config
        assert config is not None and config.health_check is not None
        od = config.outlier_detection
        uneject = od is not None and od.successful_active_health_check_uneject_host
        super().__init__(cluster, config.health_check, uneject=uneject, rng=rng)
        self._transport = network  # type: ignore[assignment]  # _probe_http sends through it
        self._network = network

    async def _probe_tcp(self, endpoint: Endpoint) -> bool:
        await self._network.connect(endpoint)
        return True


class _Observer:
    """The pipeline's ``Observer`` hooks, turned into the simulation's counters."""

    __slots__ = ("_home", "_names", "_now", "_primary", "_stats")

    def __init__(
        self,
        stats: UpstreamStats,
        names: dict[str, str],
        now: Callable[[], float],
        home: Callable[[str], str | None] | None,
        primary: Callable[[str], str | None],
    ) -> None:
        self._stats = stats
        self._names = names
        self._now = now
        self._home = home
        self._primary = primary

    def request_start(self, listener: str, request: Any) -> Any:
        return None

    def request_end(self, *args: Any) -> None:
        return None

    def attempt_start(self, ex: Exchange, cluster: Cluster, state: EndpointState) -> Any:
        return state  # the token: which endpoint the attempt went to

    def attempt_end(
        self, token: Any, ex: Exchange, outcome: Outcome, status: int | None, error: str | None
    ) -> None:
        endpoint: EndpointState = token
        self._stats.attempt(self._now(), self._names[endpoint.id], outcome.value)
        key = ex.hash_key
        if key is not None and self._home is not None:
            self._stats.keyed_attempt(
                key, self._home(key) == endpoint.id, self._primary(key) == endpoint.id
            )

    def event(
        self, ex: Exchange | None, cluster: str, name: str, attributes: dict[str, Any]
    ) -> None:
        self._stats.event(name)


class SimCluster:
    """One upstream of the configuration, run by the live classes on a simulated network."""

    def __init__(
        self,
        upstream: UpstreamConfig,
        fleet: UpstreamFleet,
        stats: UpstreamStats,
        *,
        loop: asyncio.AbstractEventLoop,
        rng: random.Random,
    ) -> None:
        self.fleet = fleet
        self.stats = stats
        self._loop = loop
        self._now = loop.time
        clock = LoopClock(loop)
        limits = upstream.circuit_breakers
        transport = SimTransport(
            loop, fleet, max_connections=limits.max_connections, max_pending=limits.max_pending
        )
        self.cluster = cluster = Cluster.from_config(upstream, clock=clock, rng=rng)
        # Outages are the scenario's own doing, shown in its report: nothing to log.
        self.watch = endpoint_watch(upstream.name, on_outage=None)
        self.watch.subscribe(cluster.update)
        self.names = {endpoint_id: ep.name for endpoint_id, ep in fleet.by_id.items()}
        keyed = upstream.balancer.hash_on is not None
        self._home = self._home_ring(upstream, clock) if keyed else None
        self.observer = _Observer(stats, self.names, self._now, self._home, cluster.primary)
        self.stack = build_stack(
            cluster,
            transport,
            StackSettings.of(upstream, cluster.budget),
            clock=clock,
            rng=rng,
            observer=self.observer,
            timeouts=TimeoutQueues(),
        )
        self.route = Route(cluster, self.stack, upstream)
        self.keyed = self.route.key_of is not None
        cluster.on_ejection.append(self._ejected)
        self._heads = {method: RequestHead(method, "/", b"") for method in ("GET", "POST")}
        self._checker = (
            _ProbeChecker(cluster, rng=rng, network=SimTransport(loop, fleet, probes=True))
            if upstream.health_check is not None
            else None
        )
        self.in_flight = 0
        self.discovery_down = False

    def _home_ring(self, upstream: UpstreamConfig, clock: LoopClock) -> Callable[[str], str | None]:
        """Where each key maps with the fleet the run starts with (its 'home')."""
        reference = Cluster.from_config(upstream, clock=clock, rng=random.Random(0))
        reference.update(self._snapshot())
        return reference.primary

    def _snapshot(self) -> EndpointSet:
        return EndpointSet.of(
            Endpoint(ep.name, PORT, weight=ep.weight, priority=ep.priority)
            for ep in self.fleet.registered()
        )

    # -- discovery -----------------------------------------------------------------------

    def publish(self) -> None:
        """The registry changed (or discovery came back): the cluster adopts what it lists."""
        if not self.discovery_down:
            self.watch.publish(self._snapshot())

    def discovery_failed(self) -> None:
        self.discovery_down = True
        self.watch.fail("discovery is unavailable (simulated)")

    def discovery_recovered(self) -> None:
        self.discovery_down = False
        self.publish()

    # -- health checks -------------------------------------------------------------------

    def start_health_checks(self) -> asyncio.Task[None] | None:
        if self._checker is None:
            return None
        return self._loop.create_task(self._checker.run())

    # -- requests ------------------------------------------------------------------------

    async def request(self, arrived: float, method: str, body: int, key: str | None) -> None:
        """One client request, from admission to its answer, as ``ProxyHandler`` runs it."""
        stats = self.stats
        cluster = self.cluster
        limit = cluster.limit
        if not limit.try_acquire():
            stats.request_done(arrived, self._now() - arrived, Overflow.status, Overflow.reason)
            return
        self.in_flight += 1
        try:
            head = self._heads.get(method) or RequestHead(method, "/", b"")
            ex = Exchange(
                head,
                b"" if body else None,
                body <= self.route.max_replay,  # larger bodies stream once: never retried
                CLIENT_IP,
                "",
                self.route,
            )
            ex.task = asyncio.current_task()
            if self.keyed:
                ex.hash_key = key
            try:
                resp = await self.stack(ex)
            except ProxyError as exc:
                status, reason = exc.status, exc.reason
            else:
                status, reason = resp.status, None
                resp.release()
        except asyncio.CancelledError:
            stats.request_unfinished(arrived)
            raise
        finally:
            self.in_flight -= 1
            limit.release()
        stats.request_done(arrived, self._now() - arrived, status, reason)

    # -- state, for the timeline ---------------------------------------------------------

    def _ejected(self, event: Ejected) -> None:
        endpoint_id = str(event.id)
        state = self.cluster.states[endpoint_id]
        self.stats.ejection(
            self._now(),
            self.names[endpoint_id],
            event.until,
            event.times,
            event.reason,
            state.failures,
        )

    def states(self) -> dict[str, tuple[bool, bool, bool, bool]]:
        """Per endpoint name: breaker open (or half-open), ejected, unhealthy, not a member."""
        cluster = self.cluster
        members = cluster.member_ids
        outlier = cluster.outlier
        health = cluster.health
        out = {}
        for endpoint_id, name in self.names.items():
            state = cluster.states.get(endpoint_id)
            breaker = state.breaker if state is not None else None
            member = endpoint_id in members
            out[name] = (
                breaker is not None and breaker.state != "closed",
                outlier is not None and outlier.is_ejected(endpoint_id),
                member and health is not None and not health.is_healthy(endpoint_id),
                not member,
            )
        return out

    def keys_away(self, keys: list[str]) -> int:
        """How many of ``keys`` the cluster would now send somewhere else than their home:
        a pick with nothing tried, as a new request's first attempt makes."""
        if self._home is None:
            return 0
        home, pick = self._home, self.cluster.pick
        away = 0
        for key in keys:
            state = pick(key, [])
            away += state is None or state.id != home(key)
        return away

    @property
    def panic(self) -> bool:
        return self.cluster.panic

    @property
    def panic_count(self) -> int:
        return self.cluster.panic_count
