"""The time left for one downstream request, across all of its attempts.

A ``Deadline`` is started once per request and shared by every attempt and backoff sleep,
so retries can never stretch a request past its overall timeout (Envoy's route timeout
includes retries). Invariants: ``remaining()`` is never negative and never grows;
``budget_for_try`` never exceeds ``remaining()``.
"""

from __future__ import annotations

from resilience.clock import Clock


class Deadline:
    __slots__ = ("_clock", "_expires_at", "_total")

    def __init__(self, clock: Clock, total: float) -> None:
        if total < 0:
            raise ValueError(f"a deadline needs total >= 0, got {total}")
        self._clock = clock
        self._total = total
        self._expires_at = clock.now() + total

    @property
    def total(self) -> float:
        return self._total

    def remaining(self) -> float:
        """Seconds left, clamped at zero."""
        return max(0.0, self._expires_at - self._clock.now())

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def budget_for_try(self, per_try: float | None) -> float:
        """Timeout for the next attempt: the per-try timeout, cut short by the deadline."""
        remaining = self.remaining()
        if per_try is None:
            return remaining
        if per_try < 0:
            raise ValueError(f"per_try must be >= 0, got {per_try}")
        return min(per_try, remaining)
