"""The layers of the outbound request path, each wrapping the next handler.

A cluster's stack is built by ``sidecar.pipeline.stack`` from the cluster's settings, each
layer holding its own (a total timeout, a retry policy and its budget, the cluster to pick
from and the per-try timeout); a policy that is off is not in the stack at all. Order,
outermost first: Deadline → Retry → Attempt. Every layer is
``async (Exchange) -> UpstreamResponse`` and raises ``ProxyError`` for failures the sidecar
answers itself.

Both timers (the total deadline and the per-try timeout) run from the moment the request
is complete, as Envoy's do: at once for a request whose body is buffered (or absent), and
from the last body byte for a streamed one. Time spent waiting for the client is never
counted against an endpoint. The attempt layer opens an ``Attempt``, which is settled
when it fails or, once answered, when the response body ends (see ``exchange``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from resilience.budget import RetryBudget
from resilience.clock import Clock
from resilience.deadline import Deadline
from resilience.outcome import Outcome, classify_status
from resilience.retry import GiveUp, RetryPolicy
from sidecar.pipeline.errors import (
    DeadlineExceeded,
    NoHealthyUpstream,
    ProxyError,
    UpstreamTimeout,
)
from sidecar.pipeline.exchange import Attempt, AttemptObserver, Exchange
from sidecar.pipeline.timeouts import Ticket, TimeoutQueues
from sidecar.transport.base import Transport, UpstreamResponse

if TYPE_CHECKING:
    from sidecar.cluster import Cluster

Handler = Callable[[Exchange], Awaitable[UpstreamResponse]]


class LayerObserver(AttemptObserver, Protocol):
    """The part of the ``Observer`` the layers report to: attempts, and decisions."""

    def event(
        self, ex: Exchange | None, cluster: str, name: str, attributes: dict[str, Any]
    ) -> None: ...


def _current_task() -> asyncio.Task[object]:
    task = asyncio.current_task()
    assert task is not None, "the pipeline runs inside a task"
    return task


def _when_complete(body: object, start: Callable[[], None]) -> None:
    """Call ``start`` once the request is complete: now when its body is bytes or none,
    else when the streamed body has arrived whole."""
    later = getattr(body, "when_complete", None)
    if later is None:
        start()
    else:
        later(start)


class BreakerRejected(ProxyError):
    """The picked endpoint's breaker refused the attempt (its half-open permit is out)."""

    status, reason, flag = 503, "breaker_open", "UO"


class DeadlineLayer:
    """The total timeout: covers every attempt and backoff of one request."""

    def __init__(self, inner: Handler, total: float, clock: Clock, timeouts: TimeoutQueues) -> None:
        self.inner = inner
        self.total = total
        self.clock = clock
        self.timeouts = timeouts

    async def __call__(self, ex: Exchange) -> UpstreamResponse:
        total = self.total
        task = ex.task
        if task is None:
            task = ex.task = _current_task()
        ticket = ex.deadline_ticket = self.timeouts.ticket(total, task)
        body = ex.body
        if body is None or type(body) is bytes:
            ex.deadline = Deadline(self.clock, total)
            ticket.arm()
        else:
            _when_complete(body, lambda: self._start(ex, ticket))
        try:
            with ticket:
                return await self.inner(ex)
        except TimeoutError:
            raise DeadlineExceeded(f"no answer within the total timeout of {total:g}s") from None

    def _start(self, ex: Exchange, ticket: Ticket) -> None:
        ex.deadline = Deadline(self.clock, self.total)
        ticket.arm()


class RetryLayer:
    """Retries per the cluster's policy, within its retry budget."""

    def __init__(
        self,
        inner: Handler,
        policy: RetryPolicy,
        budget: RetryBudget,
        rng: random.Random,
        cluster: str,
        observer: LayerObserver,
    ) -> None:
        self.inner = inner
        self.policy = policy
        self.budget = budget
        self.rng = rng
        self.cluster = cluster
        self.observer = observer

    async def __call__(self, ex: Exchange) -> UpstreamResponse:
        policy = self.policy
        budget = self.budget
        budget.record_request()
        retries = 0
        while True:
            failure: ProxyError | None = None
            resp: UpstreamResponse | None = None
            try:
                resp = await self.inner(ex)
            except NoHealthyUpstream:
                raise
            except ProxyError as exc:
                failure = exc
            if failure is None:
                attempt = ex.attempts[-1]
                outcome = attempt.outcome
                if outcome is Outcome.SUCCESS:
                    return resp  # type: ignore[return-value]
            else:
                outcome = failure.outcome
            remaining = ex.deadline.remaining() if ex.deadline is not None else float("inf")
            decision = policy.decide(
                outcome=outcome,
                status=resp.status if resp is not None else None,
                method=ex.method,
                retries_done=retries,
                replayable=ex.replayable,
                remaining=remaining,
                rng=self.rng,
            )
            if isinstance(decision, GiveUp):
                if decision.reason == "attempts_exhausted" and retries:
                    ex.add_flag("URX")
                return _give_up(resp, failure)
            if not budget.try_withdraw():
                ex.add_flag("URX")
                self.observer.event(ex, self.cluster, "retry_budget_exhausted", {})
                return _give_up(resp, failure)
            self.observer.event(
                ex,
                self.cluster,
                "retry",
                {"pilotfish.retry.delay_s": decision.delay, "pilotfish.outcome": outcome.value},
            )
            if resp is not None:
                resp.close()  # the failed answer is replaced by the retry's
            retries += 1
            if decision.delay > 0:
                await asyncio.sleep(decision.delay)


def _give_up(resp: UpstreamResponse | None, failure: ProxyError | None) -> UpstreamResponse:
    if resp is not None:
        return resp
    assert failure is not None
    raise failure


class AttemptLayer:
    """One physical attempt, the innermost layer: picks the endpoint (the cluster's
    balancer over its available endpoints) and admits it at its breaker (a rejected one is
    skipped for another), opens the ``Attempt``, sends the request over the transport —
    bounded by min(per-try timeout, time left before the deadline) when a per-try timeout
    is set — and classifies the answer. A failed attempt is settled at once; an answered
    one is handed to its response, to be settled when the body ends.

    One coroutine for all of it: an attempt that needs no timer pays for none, and the
    success path runs through a single frame.
    """

    def __init__(
        self,
        cluster: Cluster,
        transport: Transport,
        observer: LayerObserver,
        per_try: float | None,
        timeouts: TimeoutQueues,
    ) -> None:
        self.cluster = cluster
        self.transport = transport
        self.observer = observer
        self.per_try = per_try
        self.timeouts = timeouts

    async def __call__(self, ex: Exchange) -> UpstreamResponse:
        attempt = self._admit(ex)
        endpoint = attempt.state.endpoint
        ticket = self._per_try_ticket(ex)
        try:
            if ticket is None:
                resp = await self.transport.send(endpoint, ex.head, ex.body, ex.trace_fields)
            else:
                try:
                    with ticket:
                        resp = await self.transport.send(
                            endpoint, ex.head, ex.body, ex.trace_fields
                        )
                except TimeoutError:
                    raise UpstreamTimeout(
                        f"{endpoint.id} did not answer within {self.per_try:g}s"
                    ) from None
        except ProxyError as exc:
            attempt.settle(exc.outcome, exc.reason)
            raise
        except asyncio.CancelledError:
            deadline = ex.deadline_ticket
            if deadline is not None and deadline.fired:
                attempt.settle(Outcome.TIMEOUT, "deadline_exceeded")
            else:
                attempt.settle(Outcome.CANCELLED, "cancelled")  # the client left
            raise
        except BaseException:
            attempt.settle(Outcome.LOCAL_REJECTION, "internal")
            raise
        status = resp.status
        # The one place an answered attempt is classified; every policy reads this outcome.
        attempt.answered(status, classify_status(status))
        resp.watch(attempt)
        return resp

    def _admit(self, ex: Exchange) -> Attempt:
        cluster = self.cluster
        skipped = 0
        while True:
            state = cluster.pick(ex.hash_key, ex.tried)
            if state is None:
                raise NoHealthyUpstream(f"no healthy endpoint in cluster {cluster.name!r}")
            breaker = state.breaker
            permit = None
            if breaker is not None:
                permit = breaker.try_acquire()
                if permit is None:
                    # Lost the race for a half-open permit: another endpoint takes this one.
                    self.observer.event(
                        ex, cluster.name, "breaker_rejected", {"pilotfish.endpoint": state.id}
                    )
                    skipped += 1
                    ex.tried.append(state)
                    if skipped > len(cluster.member_ids):
                        raise BreakerRejected(f"breaker of {state.id} is open")
                    continue
            return Attempt(ex, cluster, state, permit, self.observer)  # joins ex.attempts

    def _per_try_ticket(self, ex: Exchange) -> Ticket | None:
        per_try = self.per_try
        if not per_try:
            return None
        if ex.deadline is not None and ex.deadline.remaining() <= per_try:
            # The total deadline ends this try first. A second timer due at the same moment
            # would race it; left to the deadline's own timer, the try is cancelled and
            # answered deadline_exceeded (a timeout of this endpoint all the same).
            return None
        task = ex.task or _current_task()
        body = ex.body
        if body is None or type(body) is bytes:
            return self.timeouts.arm(per_try, task)
        ticket = self.timeouts.ticket(per_try, task)
        _when_complete(body, ticket.arm)
        return ticket
