"""Time as an injected dependency.

Every policy core reads time through a ``Clock`` so tests can drive it with ``FakeClock``
and never sleep. Times are monotonic seconds as floats; only differences are meaningful.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds."""
        ...


class MonotonicClock:
    """The real clock: ``time.monotonic``."""

    __slots__ = ()

    # The C function itself: read on every request, a Python frame around it costs more
    # than the call.
    now = staticmethod(time.monotonic)


class FakeClock:
    """A clock that moves only when told to."""

    __slots__ = ("_t",)

    def __init__(self, start: float = 1000.0) -> None:
        self._t = start

    def now(self) -> float:
        return self._t

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._t += seconds

    def set(self, t: float) -> None:
        self._t = t


MONOTONIC = MonotonicClock()
