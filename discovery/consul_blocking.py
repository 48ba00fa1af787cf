"""Pure rules of a Consul blocking-query loop: which index to send next, and how fast to loop.

From Consul's "Blocking Queries" documentation:

* the ``X-Consul-Index`` of an answer is the ``index`` of the next request;
* sanity check: an index below 1 is raised to 1, because blocking with ``index=0`` does not
  block at all and a client that trusts a buggy 0 spins in a busy loop. 1 is always safe;
* when the index goes backwards (snapshot restore, a removed highest entry), reset to 0, which
  restarts the loop with one non-blocking read. The sanity check runs first, so a reset is
  always followed by a blocking request (index >= 1): index 0 is never sent twice in a row
  by a loop that gets answers;
* rate limit with a token bucket of burst 2: quiet services are read at once, a churning
  result degrades into polling once per ``refill_interval`` (the watch's ``min_interval``).

Invariants: no clock or randomness is read here; callers pass ``now`` (monotonic seconds).
"""

from __future__ import annotations


def next_index(previous: int, returned: int) -> int:
    """Index for the next request after an answer carrying ``returned``."""
    sane = max(returned, 1)
    if sane < previous:
        return 0
    return sane


class TokenBucket:
    """Admits ``capacity`` requests at once, then one per ``refill_interval`` seconds."""

    __slots__ = ("_capacity", "_interval", "_stamp", "_tokens")

    def __init__(self, capacity: int, refill_interval: float, now: float) -> None:
        if capacity < 1 or refill_interval < 0:
            raise ValueError(
                f"need capacity >= 1 and refill_interval >= 0, got {capacity}, {refill_interval}"
            )
        self._capacity = float(capacity)
        self._interval = refill_interval
        self._tokens = float(capacity)
        self._stamp = now

    def take(self, now: float) -> float:
        """Spend one token; returns how long to wait before using it (0.0 = go now).

        A token not yet there is reserved (the level goes below zero), so successive callers
        queue up one ``refill_interval`` apart instead of all waking at the same moment.
        """
        if self._interval == 0:
            return 0.0
        elapsed = max(0.0, now - self._stamp)
        self._stamp = max(self._stamp, now)
        self._tokens = min(self._capacity, self._tokens + elapsed / self._interval)
        self._tokens -= 1.0
        if self._tokens >= 0.0:
            return 0.0
        return -self._tokens * self._interval
