"""The layers of the outbound request path, each wrapping the next handler.

Order (outermost first) is fixed in ``sidecar.pipeline.stack``: Deadline → Retry → Pick →
Endpoint → PerTryTimeout → Transport. Every layer is ``async (Exchange) -> UpstreamResponse``
and raises ``ProxyError`` for failures the sidecar answers itself.

Both timers (the total deadline and the per-try timeout) run from the moment the request
is complete, as Envoy's do: at once for a request whose body is buffered (or absent), and
from the last body byte for a streamed one. Time spent waiting for the client is never
counted against an endpoint. The endpoint layer opens an ``Attempt``, and the attempt is
settled when it fails or, once answered, when the response body ends (see ``attempt``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

from resilience.clock import Clock
from resilience.deadline import Deadline
from resilience.outcome import Outcome, classify_status
from resilience.retry import GiveUp
from sidecar.pipeline.attempt import Attempt
from sidecar.pipeline.errors import (
    DeadlineExceeded,
    NoHealthyUpstream,
    ProxyError,
    UpstreamTimeout,
)
from sidecar.pipeline.exchange import Exchange
from sidecar.pipeline.timeouts import Ticket, TimeoutQueues
from sidecar.transport.base import UpstreamResponse

Handler = Callable[[Exchange], Awaitable[UpstreamResponse]]


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

    def __init__(self, inner: Handler, clock: Clock, timeouts: TimeoutQueues) -> None:
        self.inner = inner
        self.clock = clock
        self.timeouts = timeouts

    async def __call__(self, ex: Exchange) -> UpstreamResponse:
        total = ex.cluster.total_timeout
        if not total:
            return await self.inner(ex)
        task = ex.task
        if task is None:
            task = ex.task = _current_task()
        ticket = ex.deadline_ticket = self.timeouts.ticket(total, task)
        body = ex.body
        if body is None or type(body) is bytes:
            ex.deadline = Deadline(self.clock, total)
            ticket.arm()
        else:
            _when_complete(body, lambda: self._start(ex, ticket, total))
        try:
            with ticket:
                return await self.inner(ex)
        except TimeoutError:
            ex.outcome = Outcome.TIMEOUT
            raise DeadlineExceeded(f"no answer within the total timeout of {total:g}s") from None

    def _start(self, ex: Exchange, ticket: Ticket, total: float) -> None:
        ex.deadline = Deadline(self.clock, total)
        ticket.arm()


class RetryLayer:
    """Retries per the cluster's policy, within its retry budget."""

    def __init__(self, inner: Handler, rng: random.Random) -> None:
        self.inner = inner
        self.rng = rng

    async def __call__(self, ex: Exchange) -> UpstreamResponse:
        cluster = ex.cluster
        policy = cluster.retry_policy
        budget = cluster.budget
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
            outcome = ex.outcome
            if resp is not None and (outcome is Outcome.SUCCESS or outcome is None):
                return resp
            remaining = ex.deadline.remaining() if ex.deadline is not None else float("inf")
            decision = policy.decide(
                outcome=outcome or Outcome.LOCAL_REJECTION,
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
                ex.observer.event(ex, "retry_budget_exhausted", {})  # observer hook
                return _give_up(resp, failure)
            ex.observer.event(
                ex,
                "retry",
                {
                    "pilotfish.retry.delay_s": decision.delay,
                    "pilotfish.outcome": (outcome.value if outcome else "local_rejection"),
                },
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


class PickLayer:
    """Chooses the endpoint for this attempt (balancer over available endpoints)."""

    def __init__(self, inner: Handler) -> None:
        self.inner = inner

    async def __call__(self, ex: Exchange) -> UpstreamResponse:
        cluster = ex.cluster
        skipped = 0
        while True:
            state = cluster.pick(ex.hash_key, ex.tried)
            if state is None:
                ex.outcome = Outcome.LOCAL_REJECTION
                raise NoHealthyUpstream(f"no healthy endpoint in cluster {cluster.name!r}")
            ex.endpoint = state
            try:
                return await self.inner(ex)
            except BreakerRejected:
                # Lost the race for a half-open permit: another endpoint takes this one.
                ex.observer.event(ex, "breaker_rejected", {"pilotfish.endpoint": state.id})
                skipped += 1
                ex.tried.append(state)
                if skipped > len(cluster.member_ids):
                    raise


class EndpointLayer:
    """Breaker admission, then the ``Attempt`` that accounts for this try; a response
    carries its attempt on to be settled at the end of its body."""

    def __init__(self, inner: Handler) -> None:
        self.inner = inner

    async def __call__(self, ex: Exchange) -> UpstreamResponse:
        state = ex.endpoint
        assert state is not None
        breaker = state.breaker
        permit = None
        if breaker is not None:
            permit = breaker.try_acquire()
            if permit is None:
                raise BreakerRejected(f"breaker of {state.id} is open")
        ex.attempts += 1
        ex.tried.append(state)
        attempt = ex.attempt = Attempt(ex, state, permit)
        try:
            resp = await self.inner(ex)
        except ProxyError as exc:
            ex.outcome = exc.outcome
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
        resp.watch(attempt)
        return resp


class PerTryTimeoutLayer:
    """Bounds one attempt by min(per_try_timeout, time left before the deadline)."""

    def __init__(self, inner: Handler, timeouts: TimeoutQueues) -> None:
        self.inner = inner
        self.timeouts = timeouts

    async def __call__(self, ex: Exchange) -> UpstreamResponse:
        per_try = ex.cluster.per_try_timeout
        if per_try is None or (ex.deadline is not None and ex.deadline.remaining() <= per_try):
            # The total deadline ends this try first. A second timer due at the same moment
            # would race it; left to the deadline's own timer, the try is cancelled and
            # answered deadline_exceeded (a timeout of this endpoint all the same).
            return await self.inner(ex)
        task = ex.task or _current_task()
        body = ex.body
        if body is None or type(body) is bytes:
            ticket = self.timeouts.arm(per_try, task)
        else:
            ticket = self.timeouts.ticket(per_try, task)
            _when_complete(body, ticket.arm)
        try:
            with ticket:
                return await self.inner(ex)
        except TimeoutError:
            where = ex.endpoint.id if ex.endpoint else "?"
            raise UpstreamTimeout(f"{where} did not answer within {per_try:g}s") from None


class TransportLayer:
    """Sends the attempt over the cluster's transport; one physical attempt each call."""

    async def __call__(self, ex: Exchange) -> UpstreamResponse:
        state = ex.endpoint
        assert state is not None
        resp = await ex.cluster.transport.send(
            state.endpoint, ex.method, ex.path, ex.headers, ex.body
        )
        ex.status = status = resp.status
        # The one place an answered attempt is classified; every policy reads ex.outcome.
        ex.outcome = outcome = classify_status(status)
        attempt = ex.attempt
        if attempt is not None:
            attempt.answered(status, outcome)
        return resp
