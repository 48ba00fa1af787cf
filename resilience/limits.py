"""Admission limits on one upstream cluster (Envoy's circuit-breaker thresholds).

``ConcurrencyLimit`` bounds requests in flight (``max_requests``); ``PendingLimit`` bounds
requests waiting for a connection (``max_pending_requests``). Both answer immediately: a
refused request is a local overflow, never queued here.

Invariants: ``0 <= in_flight <= limit``; every granted ``try_acquire()`` is matched by
exactly one ``release()``; releasing more than was acquired is a bug and raises.
"""

from __future__ import annotations


class ConcurrencyLimit:
    __slots__ = ("_in_flight", "_limit", "_overflows")

    def __init__(self, max_requests: int = 1024) -> None:
        if max_requests < 0:
            raise ValueError(f"a limit must be >= 0, got {max_requests}")
        self._limit = max_requests
        self._in_flight = 0
        self._overflows = 0

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def overflows(self) -> int:
        """Refused acquisitions since creation (Envoy's ``*_overflow`` counters)."""
        return self._overflows

    def try_acquire(self) -> bool:
        if self._in_flight >= self._limit:
            self._overflows += 1
            return False
        self._in_flight += 1
        return True

    def release(self) -> None:
        if self._in_flight == 0:
            raise RuntimeError("release() without a matching try_acquire()")
        self._in_flight -= 1


class PendingLimit(ConcurrencyLimit):
    """Requests waiting for an upstream connection."""

    __slots__ = ()

    def __init__(self, max_pending_requests: int = 1024) -> None:
        super().__init__(max_pending_requests)
