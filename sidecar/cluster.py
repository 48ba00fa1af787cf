"""``Cluster``: one upstream service — its endpoints, balancer and per-endpoint state.

The endpoint snapshot comes from a discovery ``Watch`` and is replaced whole; the balancer is
rebuilt from it. Health, outlier and breaker state are keyed by endpoint id and survive
rebuilds, so an endpoint that leaves and returns keeps its history. An endpoint is
*available* when it is healthy (active checks), not ejected (outlier detection) and its
breaker admits. Priority groups (DNS SRV priorities) are tried lowest first. When fewer than
``panic_threshold`` percent of the endpoints are available the cluster is in panic and
balances over all of them (Envoy's panic mode). Every change of that state is published as
an event on the cluster's ``EventBus``: endpoints added and removed, ejected and back,
breakers opened, half open and closed, panic entered and left.

Balancers are rebuilt on the event loop in slices of about ``BUILD_SLICE``, the first one
taken at once (a ring hash ring of 200 endpoints takes a slice or two for the change of one
endpoint, a hundred or more when built from scratch or swept whole). While a build runs,
picks go to the balancers of the membership before, minus the endpoints that left, which
for a ring is exactly where the new ring sends their keys (the keys of an endpoint that
joined reach it once the build is done). Snapshots that arrive meanwhile wait for it, and
the latest of them is built next.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Hashable

from discovery.model import Endpoint, EndpointSet
from resilience.balancer import Balancer, balancer_steps
from resilience.breaker import EndpointBreaker
from resilience.budget import RetryBudget
from resilience.clock import Clock
from resilience.hashring import RingOptions
from resilience.health import HealthTable
from resilience.limits import ConcurrencyLimit
from resilience.outcome import Outcome
from resilience.outlier import Ejected, OutlierDetector
from resilience.ringbuild import Steps
from sidecar.config.policies import (
    BalancerConfig,
    EndpointBreakerConfig,
    HealthCheckConfig,
    OutlierDetectionConfig,
    RetryBudgetConfig,
)
from sidecar.config.schema import UpstreamConfig
from sidecar.events import EventBus, quiet_bus

# Panic is decided on the first pick after an endpoint's state changed, and otherwise at
# most this often: time alone (an ejection or a breaker's open period ending) only ever makes
# endpoints available again, and a tenth of a second late is soon enough for that.
PANIC_RECHECK = 0.1
# How long a turn of the event loop builds balancers before requests run again; the step
# under way when it ends is finished first (up to about 3 ms more for 200 endpoints).
BUILD_SLICE = 0.002


class EndpointState:
    """What the sidecar knows of one endpoint beyond its description."""

    __slots__ = ("breaker", "endpoint", "failures", "id", "in_flight", "successes")

    def __init__(self, endpoint: Endpoint, breaker: EndpointBreaker | None) -> None:
        self.endpoint = endpoint
        self.id = endpoint.id
        self.breaker = breaker
        self.in_flight = 0
        self.successes = 0
        self.failures = 0


class _Group:
    __slots__ = ("balancer", "ids", "priority")

    def __init__(self, priority: int, ids: tuple[str, ...], balancer: Balancer[str]) -> None:
        self.priority = priority
        self.ids = ids
        self.balancer = balancer


class Cluster:
    """One upstream's endpoints and the state kept of them.

    Built empty of policy and configured piece by piece (``configure``, or one of the
    ``set_*`` methods when a reload changes just that piece): a piece set again keeps the
    others' state, so a changed outlier policy does not reset the breakers, and the
    balancer is rebuilt from the current snapshot.
    """

    def __init__(
        self,
        name: str,
        *,
        clock: Clock,
        rng: random.Random,
        events: EventBus | None = None,
    ) -> None:
        self.name = name
        self.config: UpstreamConfig | None = None  # the configuration it was last set from
        self._clock = clock
        self._rng = rng
        self.events = events if events is not None else quiet_bus()
        self.states: dict[str, EndpointState] = {}
        self.member_ids: tuple[str, ...] = ()
        self._groups: list[_Group] = []
        self._building: Steps[list[_Group]] | None = None
        self._next: EndpointSet | None = None  # the snapshot to build once this build is done
        self._members = frozenset[str]()
        self._built = asyncio.Event()
        self._built.set()
        self.snapshot: EndpointSet | None = None
        self.panic = False
        self.panic_count = 0
        self._panic_due = 0.0  # clock time from which panic is decided afresh
        self._panic_threshold = 0.5
        self.on_ejection: list[Callable[[Ejected], None]] = []
        self.limit = ConcurrencyLimit(1024)
        self.budget: RetryBudget | None = None
        self.outlier: OutlierDetector | None = None
        self.health: HealthTable | None = None
        self._breaker_cfg: EndpointBreakerConfig | None = None
        self._policy = "round_robin"
        self._ring = RingOptions()
        self.available = self._available  # bound once: the balancer calls it per candidate

    @classmethod
    def from_config(
        cls,
        config: UpstreamConfig,
        *,
        clock: Clock,
        rng: random.Random,
        events: EventBus | None = None,
    ) -> Cluster:
        cluster = cls(config.name, clock=clock, rng=rng, events=events)
        cluster.configure(config)
        return cluster

    def configure(self, config: UpstreamConfig) -> None:
        """Set every piece of policy from ``config``."""
        self.config = config
        self.set_limits(config.circuit_breakers.max_requests)
        self.set_breakers(config.circuit_breakers.endpoint)
        self.set_outlier(config.outlier_detection)
        self.set_health(config.health_check)
        self.set_budget(config.retries.budget)
        self.set_panic_threshold(config.panic_threshold)
        self.set_balancer(config.balancer)

    # -- pieces of policy ----------------------------------------------------------------

    def set_limits(self, max_requests: int) -> None:
        # Requests in flight release the limit they acquired: a new one starts empty.
        self.limit = ConcurrencyLimit(max_requests)

    def set_breakers(self, config: EndpointBreakerConfig | None) -> None:
        """New breakers (closed) for every endpoint; ``None``: none."""
        self._breaker_cfg = config
        for state in self.states.values():
            state.breaker = self._new_breaker(state.id)
        self._panic_due = 0.0

    def set_outlier(self, od: OutlierDetectionConfig | None) -> None:
        """A new detector: its history starts empty (ejections end); ``None``: none."""
        self.outlier = (
            OutlierDetector(
                self._clock,
                consecutive_5xx=od.consecutive_5xx,
                consecutive_gateway_failure=od.consecutive_gateway_failure,
                consecutive_local_origin_failure=od.consecutive_local_origin_failure,
                base_ejection_time=od.base_ejection_time,
                max_ejection_time=od.max_ejection_time,
                max_ejection_percent=od.max_ejection_percent,
                on_return=self._returned,
            )
            if od is not None
            else None
        )
        if self.outlier is not None:
            self.outlier.set_members(self.member_ids)
        self._panic_due = 0.0

    def set_health(self, hc: HealthCheckConfig | None) -> None:
        """A new health table (every endpoint at ``initial_state``); ``None``: none."""
        self.health = (
            HealthTable(
                healthy_threshold=hc.healthy_threshold,
                unhealthy_threshold=hc.unhealthy_threshold,
                initial_healthy=hc.initial_state == "healthy",
            )
            if hc is not None
            else None
        )
        if self.health is not None:
            self.health.set_members(self.member_ids)
        self._panic_due = 0.0

    def set_budget(self, b: RetryBudgetConfig) -> None:
        self.budget = RetryBudget(
            self._clock, ratio=b.ratio, min_retries_per_second=b.min_per_second, window=b.window
        )

    def set_panic_threshold(self, percent: int) -> None:
        self._panic_threshold = percent / 100.0
        self._panic_due = 0.0

    @property
    def balancer_policy(self) -> str:
        return self._policy

    def set_balancer(self, balancer: BalancerConfig) -> None:
        ring = balancer.ring
        self._policy = balancer.policy
        self._ring = RingOptions(min_ring_size=ring.min_ring_size, max_ring_size=ring.max_ring_size)
        if self.snapshot is not None:
            self._rebuild(self.snapshot)

    # -- snapshots ---------------------------------------------------------------------

    def update(self, snapshot: EndpointSet) -> None:
        """Adopt a new endpoint snapshot (called by the discovery watch)."""
        first = self.snapshot is None
        before = set(self.member_ids)
        self.snapshot = snapshot
        for ep in snapshot.endpoints:
            state = self.states.get(ep.id)
            if state is None:
                self.states[ep.id] = EndpointState(ep, self._new_breaker(ep.id))
            else:
                state.endpoint = ep  # weight/tags may change; history stays
        self.member_ids = tuple(ep.id for ep in snapshot.endpoints)
        self._panic_due = 0.0
        if self.outlier is not None:
            self.outlier.set_members(self.member_ids)
        if self.health is not None:
            self.health.set_members(self.member_ids)
        self._members = frozenset(self.member_ids)
        self._rebuild(snapshot)
        if first:
            listed = ", ".join(_label(ep) for ep in snapshot.endpoints) or "empty"
            self.events.publish("cluster_ready", cluster=self.name, detail=listed)
            return
        after = set(self.member_ids)
        for endpoint_id in sorted(after - before):
            self._publish("endpoint_added", endpoint_id)
        for endpoint_id in sorted(before - after):
            self._publish("endpoint_removed", endpoint_id)

    def _rebuild(self, snapshot: EndpointSet) -> None:
        self._next = snapshot
        if self._building is None:
            self._build_next()

    async def balanced(self) -> None:
        """Returns once picks use balancers built for the latest snapshot."""
        while not self._built.is_set():
            await self._built.wait()

    def _build_next(self) -> None:
        snapshot, self._next = self._next, None
        assert snapshot is not None
        self._built.clear()
        self._building = self._balancers(snapshot)
        self._advance()

    def _advance(self) -> None:
        """Run the build for one slice, then let the loop run; install what it built."""
        building = self._building
        assert building is not None
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None  # nothing else could run meanwhile: build it all now
        until = self._clock.now() + BUILD_SLICE
        try:
            while True:
                next(building)
                if loop is not None and self._clock.now() >= until:
                    loop.call_soon(self._advance)
                    return
        except StopIteration as done:
            self._groups = done.value
        except Exception:
            # Picks stay on the balancers built before (the loop or the caller reports it).
            self._building = self._next = None
            self._built.set()
            raise
        self._building = None
        if self._next is not None:
            self._build_next()
        else:
            self._built.set()

    def _balancers(self, snapshot: EndpointSet) -> Steps[list[_Group]]:
        """One balancer per priority group, each built from the one it replaces."""
        by_priority: dict[int, list[Endpoint]] = {}
        for ep in snapshot.endpoints:
            by_priority.setdefault(ep.priority, []).append(ep)
        policy = self._policy
        before = {group.priority: group.balancer for group in self._groups}
        groups = []
        for prio, eps in sorted(by_priority.items()):
            balancer = yield from balancer_steps(
                policy,
                [(e.id, e.weight) for e in eps],
                rng=self._rng,
                load=self._load,
                ring=self._ring,
                previous=before.get(prio),
            )
            groups.append(_Group(prio, tuple(e.id for e in eps), balancer))
        return groups

    def _new_breaker(self, endpoint_id: str) -> EndpointBreaker | None:
        cfg = self._breaker_cfg
        if cfg is None:
            return None
        return EndpointBreaker(
            self._clock,
            fail_max=cfg.fail_max,
            reset_timeout=cfg.reset_timeout,
            success_threshold=cfg.success_threshold,
            on_change=lambda old, new: self._breaker_changed(endpoint_id, new),
        )

    # -- what changed, told as events ----------------------------------------------------

    def _breaker_changed(self, endpoint_id: str, new: str) -> None:
        self._panic_due = 0.0
        kind = {"open": "breaker_opened", "half_open": "breaker_half_open"}.get(
            new, "breaker_closed"
        )
        self._publish(kind, endpoint_id)

    def _returned(self, endpoint_id: Hashable, why: str) -> None:
        self._panic_due = 0.0
        self._publish("endpoint_returned", str(endpoint_id), detail=why)

    def _publish(self, kind: str, endpoint_id: str, detail: str = "", **facts: object) -> None:
        """An event about one endpoint, with the name discovery gives it."""
        state = self.states.get(endpoint_id)
        name = state.endpoint.name if state is not None else None
        self.events.publish(
            kind,
            cluster=self.name,
            endpoint=endpoint_id,
            endpoint_name=name,
            detail=detail,
            **facts,
        )

    def _load(self, endpoint_id: str) -> int:
        return self.states[endpoint_id].in_flight

    # -- availability and picking --------------------------------------------------------

    def _available(self, endpoint_id: str) -> bool:
        if self.health is not None and not self.health.is_healthy(endpoint_id):
            return False
        if self.outlier is not None and self.outlier.is_ejected(endpoint_id):
            return False
        breaker = self.states[endpoint_id].breaker
        return breaker is None or breaker.admits()

    def available_count(self) -> int:
        return sum(1 for i in self.member_ids if self._available(i))

    def pick(self, hash_key: str | None, tried: list[EndpointState]) -> EndpointState | None:
        """Choose an endpoint for one attempt, preferring ones this request has not tried.

        Panic is decided before picking: when fewer than ``panic_threshold`` percent of the
        members are available, health and ejection are ignored and every member whose
        breaker admits takes traffic (Envoy's panic mode), rather than overloading the few
        (or failing everything on a bad health signal).
        """
        groups = self._groups
        if not groups:
            return None
        now = self._clock.now()
        if now >= self._panic_due:
            self._set_panic(self._below_panic_threshold())
            self._panic_due = now + PANIC_RECHECK
        usable = self._admitted if self.panic else self.available
        if self._building is not None:  # the balancers still hold endpoints that left
            members, admitted = self._members, usable
            usable = lambda i: i in members and admitted(i)  # noqa: E731
        if tried:
            tried_ids = {s.id for s in tried}
            fresh: Callable[[str], bool] = lambda i: i not in tried_ids and usable(i)  # noqa: E731
            chosen = self._pick_in_groups(hash_key, fresh)
            if chosen is not None:
                return chosen
            # Every usable endpoint was tried already: reuse one rather than fail.
        return self._pick_in_groups(hash_key, usable)

    def _pick_in_groups(
        self, hash_key: str | None, eligible: Callable[[str], bool]
    ) -> EndpointState | None:
        for group in self._groups:
            chosen = group.balancer.pick(hash_key, eligible)
            if chosen is not None:
                return self.states[chosen]
        return None

    def _below_panic_threshold(self) -> bool:
        if self._panic_threshold <= 0:
            return False
        needed = len(self.member_ids) * self._panic_threshold
        available = 0
        for endpoint_id in self.member_ids:  # stops as soon as enough are found
            if self._available(endpoint_id):
                available += 1
                if available >= needed:
                    return False
        return True

    def availability_changed(self) -> None:
        """An endpoint's health, ejection or breaker changed: decide panic on the next pick."""
        self._panic_due = 0.0

    def _admitted(self, endpoint_id: str) -> bool:
        breaker = self.states[endpoint_id].breaker
        return breaker is None or breaker.admits()

    def _set_panic(self, panic: bool) -> None:
        if panic == self.panic:
            return
        self.panic = panic
        if panic:
            self.panic_count += 1
            available = sum(1 for i in self.member_ids if self._available(i))
            detail = f"{available} of {len(self.member_ids)} endpoints available"
            self.events.publish("panic_entered", cluster=self.name, detail=detail)
        else:
            self.events.publish("panic_left", cluster=self.name)

    def primary(self, hash_key: str) -> str | None:
        """The endpoint a ring-hash key maps to, ignoring availability."""
        for group in self._groups:
            primary = getattr(group.balancer, "primary", None)
            if primary is not None:
                return primary(hash_key)
        return None

    # -- outcomes ------------------------------------------------------------------------

    def record(self, state: EndpointState, outcome: Outcome) -> None:
        """Feed one attempt's outcome to the outlier detector and the endpoint's stats."""
        if not outcome.judges_endpoint:
            return
        if outcome is Outcome.SUCCESS:
            state.successes += 1
        else:
            state.failures += 1
            self._panic_due = 0.0  # a failure may have opened a breaker or ejected the endpoint
        if self.outlier is not None:
            ejected = self.outlier.record(state.id, outcome)
            if ejected is not None:
                seconds = ejected.until - self._clock.now()
                detail = f"{ejected.reason}, for {round(seconds, 1):g}s (ejection {ejected.times})"
                self._publish(
                    "endpoint_ejected",
                    state.id,
                    detail,
                    reason=ejected.reason,
                    times=ejected.times,
                )
                for callback in self.on_ejection:
                    callback(ejected)


def _label(endpoint: Endpoint) -> str:
    return endpoint.id if endpoint.name == endpoint.id else f"{endpoint.name} ({endpoint.id})"
