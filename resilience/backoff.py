"""Jittered exponential backoff delays.

Two shapes, both pure functions of an injected ``random.Random``:

* ``full_jitter`` — AWS "full jitter": a delay drawn uniformly from
  ``[0, min(cap, base * 2**(retry_number - 1))]``. Used between request retries, where
  spreading competing clients over the whole interval matters more than a minimum wait.
* ``JitteredBackoff`` — a stateful sequence for loops that retry a failing source (service
  discovery, health probes). It uses "equal jitter": half of the exponential ceiling is
  fixed and half is random, so a failing source is never re-polled in a tight loop even
  when the draw comes out near zero.

Invariants: every delay is within ``[0, cap]``; the ceiling never decreases as the retry
number grows; nothing here reads time or the global ``random`` module.
"""

from __future__ import annotations

import random

# 2.0 ** 1024 overflows a float; beyond 1023 doublings any finite cap has long been hit.
_MAX_DOUBLINGS = 1023


def backoff_ceiling(retry_number: int, base: float, cap: float) -> float:
    """``min(cap, base * 2**(retry_number - 1))`` without overflowing for huge retry numbers."""
    if retry_number < 1:
        raise ValueError(f"retry_number starts at 1, got {retry_number}")
    if base < 0 or cap < 0:
        raise ValueError(f"base and cap must be >= 0, got base={base} cap={cap}")
    return min(cap, base * 2.0 ** min(retry_number - 1, _MAX_DOUBLINGS))


def full_jitter(retry_number: int, base: float, cap: float, rng: random.Random) -> float:
    """Delay before retry number ``retry_number`` (1 for the first retry)."""
    return rng.uniform(0.0, backoff_ceiling(retry_number, base, cap))


class JitteredBackoff:
    """Capped exponential backoff with equal jitter for retrying a failing source.

    Call ``next()`` after each failure for the delay before the next try and ``reset()``
    after a success so the next outage starts again from ``base``.
    """

    __slots__ = ("_base", "_cap", "_failures", "_rng")

    def __init__(self, base: float, cap: float, rng: random.Random) -> None:
        if base <= 0 or cap < base:
            raise ValueError(f"need 0 < base <= cap, got base={base} cap={cap}")
        self._base = base
        self._cap = cap
        self._rng = rng
        self._failures = 0

    @property
    def failures(self) -> int:
        """Consecutive failures since the last ``reset()``."""
        return self._failures

    def next(self) -> float:
        self._failures += 1
        ceiling = backoff_ceiling(self._failures, self._base, self._cap)
        half = ceiling / 2.0
        return half + self._rng.uniform(0.0, half)

    def reset(self) -> None:
        self._failures = 0
