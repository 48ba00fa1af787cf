"""Per-endpoint circuit breaker: pybreaker's state machine behind a permit API.

The closed/open/half-open transitions, the consecutive-failure count (``fail_max``) and
the half-open success count (``success_threshold``) are pybreaker's ``CircuitBreaker``.
This module adds what an asyncio proxy needs and pybreaker lacks:

* **Permits.** An attempt asks ``try_acquire()`` first and settles the returned ``Permit``
  exactly once with ``record(outcome)`` or ``release()``. pybreaker's half-open state
  admits every caller; here half-open hands out exactly one trial permit at a time, so a
  recovering endpoint sees one request, not a burst.
* **The injected clock.** pybreaker stamps ``opened_at`` with ``datetime.now()`` and
  compares it with wall time in its open state. We keep pybreaker's storage hook and swap
  the storage: ``_ClockedStorage`` also records the injected ``Clock`` reading whenever
  pybreaker sets ``opened_at``. The open -> half-open move is then decided here from that
  reading, by calling pybreaker's own ``half_open()``; pybreaker's wall-time check is never
  reached because outcomes are only fed to pybreaker in the closed and half-open states.
  A storage class rather than a ``CircuitBreaker`` subclass, because storage is pybreaker's
  documented extension point and no private method has to be overridden.
* **Outcomes, not exceptions.** An ``Outcome`` with ``counts_against_endpoint`` is fed to
  pybreaker as a failing call, any other settled outcome as a successful call;
  ``LOCAL_REJECTION`` and ``CANCELLED`` attempts only return the permit.

Invariants: at most one half-open trial permit is outstanding; a permit settles at most
once (later calls are no-ops); a permit granted before the last state change settles
without effect, so a straggler from the closed state can neither re-open nor close the
circuit on the strength of an old request.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime
from typing import Literal

import pybreaker

from resilience.clock import Clock
from resilience.outcome import Outcome

BreakerState = Literal["closed", "open", "half_open"]

_STATE_NAMES: dict[str, BreakerState] = {
    pybreaker.STATE_CLOSED: "closed",
    pybreaker.STATE_OPEN: "open",
    pybreaker.STATE_HALF_OPEN: "half_open",
}


class _AttemptFailed(Exception):
    """Raised inside pybreaker's ``call`` to report a failed attempt."""


def _fail() -> None:
    raise _AttemptFailed


def _succeed() -> None:
    return None


class _ClockedStorage(pybreaker.CircuitMemoryStorage):
    """pybreaker's in-memory storage that also notes the injected clock when the circuit opens."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(pybreaker.STATE_CLOSED)
        self._clock = clock
        self.opened_at_clock: float | None = None

    @property
    def opened_at(self) -> datetime | None:
        return self._opened_at

    @opened_at.setter
    def opened_at(self, value: datetime) -> None:
        self._opened_at = value
        self.opened_at_clock = self._clock.now()


class _EpochListener(pybreaker.CircuitBreakerListener):
    """Counts state changes so permits from an earlier state can be told apart, and tells
    ``on_change`` of each."""

    def __init__(self, on_change: Callable[[BreakerState, BreakerState], None] | None) -> None:
        self.epoch = 0
        self._on_change = on_change

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        self.epoch += 1
        if self._on_change is not None and old_state is not None:
            self._on_change(_STATE_NAMES[old_state.name], _STATE_NAMES[new_state.name])


class Permit:
    """The right to make one attempt; settle it exactly once."""

    __slots__ = ("_breaker", "_epoch", "_settled", "trial")

    def __init__(self, breaker: EndpointBreaker, epoch: int, trial: bool) -> None:
        self._breaker = breaker
        self._epoch = epoch
        self._settled = False
        self.trial = trial

    @property
    def settled(self) -> bool:
        return self._settled

    def record(self, outcome: Outcome) -> None:
        """Report how the attempt ended; ``LOCAL_REJECTION`` only returns the permit."""
        if self._settled:
            return
        self._settled = True
        self._breaker._settle(self, outcome)

    def release(self) -> None:
        """Return the permit without counting anything (cancelled or locally refused attempt)."""
        if self._settled:
            return
        self._settled = True
        self._breaker._settle(self, None)


class EndpointBreaker:
    """Circuit breaker for one upstream endpoint."""

    def __init__(
        self,
        clock: Clock,
        *,
        fail_max: int = 5,
        reset_timeout: float = 30.0,
        success_threshold: int = 1,
        name: str | None = None,
        on_change: Callable[[BreakerState, BreakerState], None] | None = None,
    ) -> None:
        if fail_max < 1 or success_threshold < 1 or reset_timeout < 0:
            raise ValueError("need fail_max >= 1, success_threshold >= 1, reset_timeout >= 0")
        self._clock = clock
        self._storage = _ClockedStorage(clock)
        self._epochs = _EpochListener(on_change)
        self._cb = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=reset_timeout,
            success_threshold=success_threshold,
            state_storage=self._storage,
            listeners=[self._epochs],
            name=name,
            throw_new_error_on_trip=False,
        )
        self._trial_out = False

    @property
    def state(self) -> BreakerState:
        self._half_open_if_due()
        return _STATE_NAMES[self._cb.current_state]

    @property
    def consecutive_failures(self) -> int:
        return self._cb.fail_counter

    def admits(self) -> bool:
        """Whether ``try_acquire()`` would grant a permit now."""
        if self._storage.state == pybreaker.STATE_CLOSED:  # the common case, read directly
            return True
        state = self.state
        return state == "closed" or (state == "half_open" and not self._trial_out)

    def try_acquire(self) -> Permit | None:
        """A permit for one attempt, or None when the circuit refuses it."""
        if self._storage.state == pybreaker.STATE_CLOSED:
            return Permit(self, self._epochs.epoch, trial=False)
        state = self.state
        if state == "closed":
            return Permit(self, self._epochs.epoch, trial=False)
        if state == "half_open" and not self._trial_out:
            self._trial_out = True
            return Permit(self, self._epochs.epoch, trial=True)
        return None

    def _half_open_if_due(self) -> None:
        if self._cb.current_state != pybreaker.STATE_OPEN:
            return
        opened = self._storage.opened_at_clock
        if opened is None or self._clock.now() - opened >= self._cb.reset_timeout:
            self._cb.half_open()

    def _settle(self, permit: Permit, outcome: Outcome | None) -> None:
        if permit.trial:
            self._trial_out = False
        if permit._epoch != self._epochs.epoch:
            return
        if outcome is None or not outcome.judges_endpoint:
            return
        if (
            outcome is Outcome.SUCCESS
            and not permit.trial
            and self._cb.fail_counter == 0
            and self._cb.current_state == pybreaker.STATE_CLOSED
        ):
            # The hot path: a success on a healthy circuit changes nothing in pybreaker
            # (it would reset a counter that is already 0), so skip its call machinery.
            return
        with contextlib.suppress(_AttemptFailed):
            self._cb.call(_fail if outcome.counts_against_endpoint else _succeed)
