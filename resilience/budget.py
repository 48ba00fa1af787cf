"""Retry budget: retries may add at most a fixed share on top of the original traffic.

Linkerd's budget (after Finagle's ``RetryBudget``): within a sliding ``window`` the
number of retries allowed is ``min_retries_per_second * window + ratio * requests``,
where ``requests`` counts original requests only. The reserve lets a quiet client still
retry; the ratio caps how much a retry storm can multiply load on a struggling upstream.

The window is kept as ``_SLICES`` equal time slices, each holding the requests and retries
recorded during it; a slice is dropped once it is a whole window old. Both deposits
(requests) and withdrawals (retries) expire with their slice, so the budget refills on its
own once the retries age out.

Invariants: ``remaining()`` is never negative; ``try_withdraw()`` returns True only when
``remaining()`` was at least one before the call, and then lowers it by one.
"""

from __future__ import annotations

import math
from collections import deque

from resilience.clock import Clock

_SLICES = 10
# 0.1 * 30 is 3.0000000000000004 in floating point; the budget should grant exactly 3.
_EPSILON = 1e-9


class RetryBudget:
    __slots__ = ("_clock", "_min_per_s", "_ratio", "_slice_width", "_slices", "_window")

    def __init__(
        self,
        clock: Clock,
        ratio: float = 0.2,
        min_retries_per_second: float = 10,
        window: float = 10.0,
    ) -> None:
        if ratio < 0 or min_retries_per_second < 0 or window <= 0:
            raise ValueError("need ratio >= 0, min_retries_per_second >= 0, window > 0")
        self._clock = clock
        self._ratio = ratio
        self._min_per_s = min_retries_per_second
        self._window = window
        self._slice_width = window / _SLICES
        # (slice index, requests, retries), oldest first
        self._slices: deque[list[int]] = deque()

    def record_request(self) -> None:
        """Note one original (non-retry) request."""
        self._current_slice()[1] += 1

    def try_withdraw(self) -> bool:
        """Spend one retry from the budget; False means the budget is empty: do not retry."""
        if self.remaining() < 1:
            return False
        self._current_slice()[2] += 1
        return True

    def remaining(self) -> int:
        """Retries that may be made now."""
        self._expire()
        requests = sum(s[1] for s in self._slices)
        retries = sum(s[2] for s in self._slices)
        allowed = self._min_per_s * self._window + self._ratio * requests
        return max(0, math.floor(allowed + _EPSILON) - retries)

    def _slice_index(self) -> int:
        return math.floor(self._clock.now() / self._slice_width)

    def _expire(self) -> None:
        oldest_kept = self._slice_index() - _SLICES + 1
        while self._slices and self._slices[0][0] < oldest_kept:
            self._slices.popleft()

    def _current_slice(self) -> list[int]:
        index = math.floor(self._clock.now() / self._slice_width)
        slices = self._slices
        if slices and slices[-1][0] == index:
            return slices[-1]  # the common case: this slice exists, older ones expired before
        oldest_kept = index - _SLICES + 1
        while slices and slices[0][0] < oldest_kept:
            slices.popleft()
        slices.append([index, 0, 0])
        return slices[-1]
