"""Waiting on sources in tests without sleeping as synchronisation."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from discovery.model import EndpointSet
from discovery.watch import Watch


class Runnable(Protocol):
    async def run(self) -> None: ...

    async def close(self) -> None: ...


async def until(
    watch: Watch[EndpointSet], predicate: Callable[[EndpointSet], bool], timeout: float = 1.0
) -> EndpointSet:
    """The first published value (current one included) satisfying ``predicate``."""
    async with asyncio.timeout(timeout):
        while watch.value is None or not predicate(watch.value):
            await watch.wait_changed()
    assert watch.value is not None
    return watch.value


async def eventually(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    """For states no API announces (a failure being recorded): poll the condition."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def addresses(snapshot: EndpointSet) -> list[str]:
    return [e.id for e in snapshot.endpoints]


@contextlib.asynccontextmanager
async def running(source: Runnable) -> AsyncIterator[asyncio.Task[None]]:
    """Runs ``source.run()`` as a task; a crash of ``run`` fails the test at exit."""
    task = asyncio.create_task(source.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await source.close()
