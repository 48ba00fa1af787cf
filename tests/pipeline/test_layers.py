"""Each layer of the request path alone, around scripted inner handlers: its own settings,
what it decides, and what it tells the attempt and the observer."""

from __future__ import annotations

import asyncio
import random

import pytest

from resilience.budget import RetryBudget
from resilience.clock import FakeClock
from resilience.outcome import Outcome
from resilience.retry import RetryPolicy
from sidecar.pipeline.errors import (
    ConnectFailure,
    DeadlineExceeded,
    NoHealthyUpstream,
    UpstreamReset,
    UpstreamTimeout,
)
from sidecar.pipeline.exchange import Attempt, Exchange
from sidecar.pipeline.layers import AttemptLayer, DeadlineLayer, RetryLayer
from sidecar.pipeline.timeouts import TimeoutQueues
from tests.pipeline.support import Recorder, Response, cluster, exchange


async def hang(ex: Exchange) -> Response:
    await asyncio.get_running_loop().create_future()
    raise AssertionError("unreachable")


class Transport:
    """Sends by calling ``script`` with the exchange and the endpoint picked."""

    def __init__(self, script) -> None:
        self.script = script

    async def send(self, endpoint, head, body, extra=b"") -> Response:
        return await self.script(endpoint)


async def hangs(endpoint) -> Response:
    await asyncio.get_running_loop().create_future()
    raise AssertionError("unreachable")


def attempt_layer(
    script, c=None, observer: Recorder | None = None, per_try: float | None = None
) -> AttemptLayer:
    return AttemptLayer(
        c or cluster(), Transport(script), observer or Recorder(), per_try, TimeoutQueues()
    )


def open_attempt(ex: Exchange, observer: Recorder | None = None) -> Attempt:
    c = cluster()
    state = c.states[c.member_ids[0]]
    return Attempt(ex, c, state, None, observer or Recorder())


class StreamedBody:
    """A request body still arriving: completes when the test says so."""

    def __init__(self) -> None:
        self.callbacks: list = []

    def when_complete(self, callback) -> None:
        self.callbacks.append(callback)

    def complete(self) -> None:
        for callback in self.callbacks:
            callback()


async def test_deadline_layer_ends_the_request_at_its_total_timeout():
    layer = DeadlineLayer(hang, 0.05, FakeClock(), TimeoutQueues())
    ex = exchange()
    with pytest.raises(DeadlineExceeded):
        async with asyncio.timeout(5):
            await layer(ex)
    assert ex.deadline is not None and ex.deadline_ticket is not None


async def test_deadline_layer_starts_its_clock_when_a_streamed_body_is_complete():
    body = StreamedBody()
    layer = DeadlineLayer(hang, 0.05, FakeClock(), TimeoutQueues())
    ex = exchange(body)

    async def run() -> None:
        ex.task = asyncio.current_task()
        await layer(ex)

    running = asyncio.create_task(run())
    with pytest.raises(TimeoutError):  # no timer while the body still arrives
        await asyncio.wait_for(asyncio.shield(running), 0.2)
    assert ex.deadline is None
    body.complete()
    with pytest.raises(DeadlineExceeded):
        await asyncio.wait_for(running, 5)


async def test_the_per_try_timeout_charges_the_endpoint_with_an_upstream_timeout():
    observer = Recorder()
    layer = attempt_layer(hangs, observer=observer, per_try=0.05)
    ex = exchange()
    with pytest.raises(UpstreamTimeout, match=r"did not answer within 0\.05s"):
        async with asyncio.timeout(5):
            await layer(ex)
    assert ex.attempts[0].settled and ex.attempts[0].outcome is Outcome.TIMEOUT
    assert observer.ends()[0][2] is Outcome.TIMEOUT


async def test_without_a_per_try_timeout_no_timer_is_armed():
    layer = attempt_layer(lambda endpoint: answer(200))
    await layer(exchange())
    assert not layer.timeouts._queues  # no queue was ever needed


async def answer(status: int) -> Response:
    return Response(status)


@pytest.mark.parametrize(
    ("raised", "outcome"),
    [(ConnectFailure("no"), Outcome.CONNECT_FAILURE), (UpstreamReset("cut"), Outcome.RESET)],
)
async def test_a_failed_attempt_is_settled_at_once(raised, outcome):
    async def fails(endpoint) -> Response:
        raise raised

    observer = Recorder()
    ex = exchange()
    with pytest.raises(type(raised)):
        await attempt_layer(fails, observer=observer)(ex)
    attempt = ex.attempts[0]
    assert attempt.settled and attempt.outcome is outcome
    assert observer.ends() == [("end", attempt.state.id, outcome, None, raised.reason)]
    assert attempt.state.in_flight == 0


async def test_an_answered_attempt_is_handed_to_its_response():
    response = Response(200)

    async def answers(endpoint) -> Response:
        return response

    observer = Recorder()
    ex = exchange()
    assert await attempt_layer(answers, observer=observer)(ex) is response
    attempt = ex.attempts[0]
    assert not attempt.settled and attempt.state.in_flight == 1  # the body still streams
    response.release()
    assert attempt.settled and observer.ends()[-1][2] is Outcome.SUCCESS
    assert attempt.ex is None  # it let go of its exchange


async def test_the_answer_is_classified_once():
    ex = exchange()
    resp = await attempt_layer(lambda endpoint: answer(502))(ex)
    attempt = ex.attempts[0]
    assert resp.status == 502
    assert (attempt.status, attempt.outcome) == (502, Outcome.GATEWAY_ERROR)


async def test_a_client_gone_is_no_failure_of_the_endpoint():
    ex = exchange()
    running = asyncio.create_task(attempt_layer(hangs)(ex))
    await asyncio.sleep(0)  # the attempt is under way
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert ex.attempts[0].outcome is Outcome.CANCELLED  # nobody is charged


async def test_endpoints_whose_breaker_refuses_are_skipped():
    c = cluster(circuit_breakers={"endpoint": {"fail_max": 1}})
    first = c.states[c.member_ids[0]]
    permit = first.breaker.try_acquire()
    permit.record(Outcome.RESET)  # open
    picked = []

    async def sends(endpoint) -> Response:
        picked.append(endpoint.id)
        return Response()

    layer = attempt_layer(sends, c)
    for _ in range(6):
        (await layer(exchange())).release()
    assert first.id not in picked and len(set(picked)) == 2


async def test_no_endpoint_is_no_healthy_upstream():
    c = cluster()
    from discovery.model import EndpointSet

    c.update(EndpointSet.of([], source="static"))
    with pytest.raises(NoHealthyUpstream):
        await attempt_layer(hangs, c)(exchange())


def retry_layer(inner, attempts: int = 2, ratio: float = 1.0) -> tuple[RetryLayer, Recorder]:
    policy = RetryPolicy(
        attempts=attempts, retry_on=frozenset({"connect-failure", "5xx"}), backoff_base=0.001,
        backoff_max=0.001,
    )  # fmt: skip
    budget = RetryBudget(FakeClock(), ratio=ratio, min_retries_per_second=100, window=10)
    observer = Recorder()
    return RetryLayer(inner, policy, budget, random.Random(1), "api", observer), observer


async def test_retry_layer_retries_a_connect_failure_then_returns_the_answer():
    calls = 0

    async def flaky(ex: Exchange) -> Response:
        nonlocal calls
        calls += 1
        open_attempt(ex)
        if calls < 3:
            raise ConnectFailure("refused")
        ex.attempts[-1].answered(200, Outcome.SUCCESS)
        return Response(200)

    layer, observer = retry_layer(flaky)
    resp = await layer(exchange())
    assert resp.status == 200 and calls == 3
    assert [c[1] for c in observer.calls] == ["retry", "retry"]


async def test_retry_layer_gives_up_on_a_5xx_after_its_attempts_and_flags_it():
    seen: list[Response] = []

    async def fails(ex: Exchange) -> Response:
        open_attempt(ex)
        ex.attempts[-1].answered(503, Outcome.GATEWAY_ERROR)
        seen.append(Response(503))
        return seen[-1]

    layer, _ = retry_layer(fails, attempts=2)
    ex = exchange()
    resp = await layer(ex)
    assert resp.status == 503 and len(seen) == 3
    assert [r.closed for r in seen] == [True, True, False]  # replaced answers are dropped
    assert "URX" in ex.flags
