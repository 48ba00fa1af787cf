"""An asyncio event loop that runs on virtual time.

``VirtualTimeLoop`` is asyncio's own ``BaseEventLoop`` (its ready queue, timer heap, tasks
and futures, unchanged) with two differences: ``time()`` reads a number the loop keeps,
not a clock, and waiting for the next timer takes no wall time: where a real loop would
block in its selector until the earliest timer is due, this one moves its time forward to
that timer and carries on. Code that reads time through ``loop.time()`` (``asyncio.sleep``,
``asyncio.timeout``, ``call_at``, the pipeline's timeout queues, a ``Clock`` reading the
loop) sees the same sequence of events as on a real loop, only without the waiting.

Invariants: time starts at ``start`` and never goes backwards; it moves only when nothing
is ready to run; callbacks due at the same moment run in the order they were scheduled,
so a run is reproducible. There is no I/O: a socket or a thread-safe wake-up is refused.
When nothing is ready and no timer is scheduled the loop can never make progress again,
and it raises ``Stalled`` rather than hang.
"""

from __future__ import annotations

import asyncio
import selectors
from typing import Any


class Stalled(RuntimeError):
    """Nothing is ready to run and no timer is set: the simulation cannot go on."""


class _TimeTravel(selectors.BaseSelector):
    """The selector the loop 'waits' in: it moves virtual time instead of blocking."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        self._loop = loop

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        raise NotImplementedError("a simulation does no I/O")

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        raise NotImplementedError("a simulation does no I/O")

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise Stalled("nothing left to run and no timer set")
        if timeout > 0:
            self._loop.advance(timeout)
        return []

    def get_map(self) -> dict[Any, selectors.SelectorKey]:
        return {}


class VirtualTimeLoop(asyncio.BaseEventLoop):
    def __init__(self, start: float = 0.0) -> None:
        super().__init__()
        self._now = start
        self._selector = _TimeTravel(self)

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    def _process_events(self, event_list: list[Any]) -> None:
        return None  # no I/O, so no events

    def _write_to_self(self) -> None:
        # Only call_soon_threadsafe wakes a loop through here; nothing else runs threads.
        raise RuntimeError("a simulation's loop cannot be woken from another thread")


class LoopClock:
    """A ``resilience.clock.Clock`` that reads the loop's (virtual) time."""

    __slots__ = ("now",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.now = loop.time
