"""TimeoutQueue: one timer per timeout length, tickets fire in order, never early, never twice."""

from __future__ import annotations

import asyncio

import pytest

from sidecar.pipeline.timeouts import TimeoutQueue, TimeoutQueues

DELAY = 0.02


async def _held(queue: TimeoutQueue | TimeoutQueues, *, delay: float = DELAY) -> tuple[str, float]:
    """Arms a ticket for the current task and waits forever: how did it end, and when."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    armed = loop.time()
    ticket = queue.arm(delay, task) if isinstance(queue, TimeoutQueues) else queue.arm(task)
    try:
        await loop.create_future()
    except asyncio.CancelledError:
        if ticket.settle(cancelled=True):
            return "timed out", loop.time() - armed
        raise
    raise AssertionError("unreachable")


async def test_a_ticket_expires_at_its_deadline_and_cancels_only_its_task() -> None:
    queue = TimeoutQueue(asyncio.get_running_loop(), DELAY)
    task = asyncio.create_task(_held(queue))
    how, after = await task
    assert how == "timed out"
    assert after >= DELAY - 0.001  # uvloop keeps time in whole milliseconds
    assert task.cancelling() == 0  # the timeout took its cancellation back
    assert len(queue) == 0


async def test_a_settled_ticket_never_fires() -> None:
    loop = asyncio.get_running_loop()
    queue = TimeoutQueue(loop, DELAY)
    task = asyncio.current_task()
    assert task is not None
    ticket = queue.arm(task)
    ticket.settle(cancelled=False)
    # A second ticket armed later expires after the first one's deadline has passed.
    later = asyncio.create_task(_held(queue))
    how, _ = await later
    assert how == "timed out"
    assert not ticket.fired
    assert task.cancelling() == 0


async def test_tickets_fire_oldest_first_and_settled_ones_are_dropped_from_the_front() -> None:
    loop = asyncio.get_running_loop()
    queue = TimeoutQueue(loop, DELAY)
    task = asyncio.current_task()
    assert task is not None
    for _ in range(1000):
        queue.arm(task).settle(cancelled=False)
    assert len(queue) == 1  # each arm drops the settled ones ahead of it
    held = [asyncio.create_task(_held(queue)) for _ in range(5)]
    ends = [await t for t in held]
    assert all(how == "timed out" for how, _ in ends)
    assert len(queue) == 0


async def test_an_outer_cancellation_in_the_same_moment_is_not_swallowed() -> None:
    loop = asyncio.get_running_loop()
    queue = TimeoutQueue(loop, DELAY)
    outcome: list[str] = []

    async def inner_then_outer() -> None:
        task = asyncio.current_task()
        assert task is not None
        ticket = queue.arm(task)
        try:
            await loop.create_future()
        except asyncio.CancelledError:
            task.cancel()  # someone else (an outer timeout, a gone client) cancels too
            outcome.append("mine" if ticket.settle(cancelled=True) else "not mine")
            raise

    task = asyncio.create_task(inner_then_outer())
    with pytest.raises(asyncio.CancelledError):
        await task
    assert outcome == ["not mine"]


async def test_a_cancellation_from_outside_is_not_reported_as_a_timeout() -> None:
    loop = asyncio.get_running_loop()
    queue = TimeoutQueue(loop, 60.0)
    started = asyncio.Event()

    async def waits() -> None:
        task = asyncio.current_task()
        assert task is not None
        ticket = queue.arm(task)
        started.set()
        try:
            await loop.create_future()
        except asyncio.CancelledError:
            assert not ticket.settle(cancelled=True)
            raise

    task = asyncio.create_task(waits())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    queue.close()


async def test_queues_by_length_each_keep_their_own_deadline() -> None:
    queues = TimeoutQueues()
    short = asyncio.create_task(_held(queues, delay=DELAY))
    long = asyncio.create_task(_held(queues, delay=3 * DELAY))
    (_, short_after), (_, long_after) = await short, await long
    assert short_after < 3 * DELAY - 0.001 <= long_after


def test_queues_survive_a_new_event_loop() -> None:
    queues = TimeoutQueues()
    for _ in range(2):
        how, _ = asyncio.run(_held(queues))
        assert how == "timed out"


async def test_as_a_context_manager_a_ticket_expires_as_timeout_error() -> None:
    queue = TimeoutQueue(asyncio.get_running_loop(), DELAY)
    task = asyncio.current_task()
    assert task is not None
    with pytest.raises(TimeoutError), queue.arm(task):
        await asyncio.get_running_loop().create_future()
    assert task.cancelling() == 0
    with queue.arm(task) as ticket:  # settled on the way out: never fires afterwards
        pass
    assert ticket.settled and not ticket.fired
