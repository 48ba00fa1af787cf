"""Waiting on sources in tests without sleeping as synchronisation.

Every wait here is bounded and says what it waited for when it gives up (as a
``TimeoutError``, which some tests expect), so a stuck source fails its test instead of
stalling the run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from discovery.model import EndpointSet
from discovery.watch import Watch

STOPS_WITHIN = 5.0


class Runnable(Protocol):
    async def run(self) -> None: ...

    async def close(self) -> None: ...


async def until(
    watch: Watch[EndpointSet], predicate: Callable[[EndpointSet], bool], timeout: float = 1.0
) -> EndpointSet:
    """The first published value (current one included) satisfying ``predicate``."""
    try:
        async with asyncio.timeout(timeout):
            while watch.value is None or not predicate(watch.value):
                await watch.wait_changed()
    except TimeoutError:
        shown = None if watch.value is None else addresses(watch.value)
        raise TimeoutError(
            f"watch {watch.name!r}: no value satisfying the predicate within {timeout}s "
            f"(value {shown}, last error {watch.last_error!r})"
        ) from None
    assert watch.value is not None
    return watch.value


async def eventually(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    """For states no API announces (a failure being recorded): poll the condition."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise TimeoutError(f"condition still false after {timeout}s") from None


def addresses(snapshot: EndpointSet) -> list[str]:
    return [e.id for e in snapshot.endpoints]


@contextlib.asynccontextmanager
async def running(
    source: Runnable, stops_within: float = STOPS_WITHIN
) -> AsyncIterator[asyncio.Task[None]]:
    """Runs ``source.run()`` as a task, cancelled at exit.

    A crash of ``run`` fails the test at exit, and so does a ``run`` still going
    ``stops_within`` seconds after its cancellation: awaiting it would hang the test.
    """
    task = asyncio.create_task(source.run())
    try:
        yield task
    finally:
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=stops_within)
        async with asyncio.timeout(stops_within):
            await source.close()
        if not done:
            # close() makes a loop that ignored the cancellation end at its next step
            await asyncio.wait({task}, timeout=stops_within)
            task.cancel()
            raise AssertionError(
                f"{type(source).__name__}.run() still running {stops_within}s after it was "
                "cancelled: the cancellation was swallowed or is blocked"
            )
        if not task.cancelled():
            task.result()  # re-raises a crash of run()
