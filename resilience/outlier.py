"""Passive outlier detection: eject endpoints that keep failing real traffic.

Follows Envoy's consecutive-error detectors with local-origin errors split out:

* ``HTTP_5XX`` counts towards ``consecutive_5xx``; ``GATEWAY_ERROR`` (502/503/504) counts
  towards both ``consecutive_5xx`` and ``consecutive_gateway_failure``; a non-gateway 5xx
  ends a run of gateway failures.
* ``CONNECT_FAILURE``, ``RESET`` and ``TIMEOUT`` count towards
  ``consecutive_local_origin_failure``; any HTTP response proves the connection works and
  ends that run.
* ``SUCCESS`` resets every counter; ``LOCAL_REJECTION`` is the sidecar's own decision and
  changes nothing.

An endpoint reaching a threshold is ejected for ``base_ejection_time * times_ejected``,
capped at ``max_ejection_time``. It returns to service lazily, when a query finds its time
has passed; its counters then start from zero. ``times_ejected`` decays: each full
``base_ejection_time`` spent in service after a return takes one off, so an endpoint that
fails again soon after returning is ejected for longer than one that stayed healthy.

``max_ejection_percent`` caps the ejected share of the current members, except that one
ejection is always allowed while at least two members are in service (a pure percentage
would never eject anything in a two- or three-endpoint cluster). A percentage of 0
disables ejection.

Invariants: only current members are ejected and only they count in the percentages;
an ejected endpoint ignores outcomes until it returns (they come from requests sent before
the ejection); history of an endpoint that leaves the member set is kept while it still
matters (ejected, or ``times_ejected`` not yet decayed to zero), so a flapping endpoint
cannot shed its record by leaving and rejoining. ``on_return`` is told once per ejection
that ends, when it ends (lazily, like the return itself) or when ``uneject`` ends it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from resilience.clock import Clock
from resilience.outcome import Outcome

EjectionReason = Literal[
    "consecutive_5xx", "consecutive_gateway_failure", "consecutive_local_origin_failure"
]


@dataclass(frozen=True, slots=True)
class Ejected:
    id: Hashable
    until: float
    times: int
    reason: EjectionReason


@dataclass(slots=True)
class _Record:
    consecutive_5xx: int = 0
    consecutive_gateway_failure: int = 0
    consecutive_local_origin_failure: int = 0
    times_ejected: int = 0
    ejected_until: float | None = None
    decay_from: float | None = None
    """Start of the current in-service interval that will decay ``times_ejected``."""

    def reset_counters(self) -> None:
        self.consecutive_5xx = 0
        self.consecutive_gateway_failure = 0
        self.consecutive_local_origin_failure = 0

    @property
    def clean(self) -> bool:
        return self.ejected_until is None and self.times_ejected == 0


class OutlierDetector:
    def __init__(
        self,
        clock: Clock,
        *,
        consecutive_5xx: int = 5,
        consecutive_gateway_failure: int = 5,
        consecutive_local_origin_failure: int = 5,
        base_ejection_time: float = 30.0,
        max_ejection_time: float = 300.0,
        max_ejection_percent: int = 50,
        on_return: Callable[[Hashable, str], None] | None = None,
    ) -> None:
        if base_ejection_time <= 0:
            raise ValueError(f"base_ejection_time must be > 0, got {base_ejection_time}")
        if not 0 <= max_ejection_percent <= 100:
            raise ValueError(f"max_ejection_percent must be in 0..100, got {max_ejection_percent}")
        self._clock = clock
        self._thresholds = (
            consecutive_5xx,
            consecutive_gateway_failure,
            consecutive_local_origin_failure,
        )
        self._base = base_ejection_time
        # Envoy never ejects for less than the base time, whatever the cap says.
        self._max = max(max_ejection_time, base_ejection_time)
        self._max_percent = max_ejection_percent
        # Told when an ejection ends (its time ran out, or a health check ended it early).
        self._on_return = on_return
        self._members: frozenset[Hashable] = frozenset()
        self._records: dict[Hashable, _Record] = {}

    def set_members(self, ids: Iterable[Hashable]) -> None:
        self._members = frozenset(ids)
        self._prune()

    def record(self, id: Hashable, outcome: Outcome) -> Ejected | None:
        """Account one attempt's outcome; returns the ejection it caused, if any."""
        if not outcome.judges_endpoint:
            return None
        now = self._clock.now()
        rec = self._records.get(id)
        if rec is None:
            rec = self._records[id] = _Record()
        self._settle(id, rec, now)
        if rec.ejected_until is not None:
            return None
        reason = self._count(rec, outcome)
        if reason is None or id not in self._members or not self._may_eject(id, now):
            return None
        rec.times_ejected += 1
        rec.ejected_until = now + min(self._base * rec.times_ejected, self._max)
        rec.decay_from = None
        return Ejected(id=id, until=rec.ejected_until, times=rec.times_ejected, reason=reason)

    def uneject(self, id: Hashable) -> bool:
        """End an ejection early (a passing active health check says the host is back).

        The ejection still counts in ``times_ejected``, which decays as usual, so a host
        that fails again soon is ejected for longer. Returns True when it was ejected.
        """
        rec = self._records.get(id)
        if rec is None:
            return False
        now = self._clock.now()
        self._settle(id, rec, now)
        if rec.ejected_until is None:
            return False
        rec.ejected_until = None
        rec.decay_from = now
        rec.reset_counters()
        if self._on_return is not None:
            self._on_return(id, "a health check passed")
        return True

    def is_ejected(self, id: Hashable) -> bool:
        rec = self._records.get(id)
        if rec is None or rec.ejected_until is None:
            return False  # time only ever ends an ejection, so nothing to settle
        self._settle(id, rec, self._clock.now())
        return rec.ejected_until is not None

    def ejected_ids(self) -> frozenset[Hashable]:
        self._prune()
        return frozenset(i for i, rec in self._records.items() if rec.ejected_until is not None)

    def snapshot(self, id: Hashable) -> dict[str, Any]:
        """State of one endpoint for the admin page (times are clock seconds)."""
        rec = self._records.get(id) or _Record()
        self._settle(id, rec, self._clock.now())
        return {
            "ejected": rec.ejected_until is not None,
            "ejected_until": rec.ejected_until,
            "times_ejected": rec.times_ejected,
            "consecutive_5xx": rec.consecutive_5xx,
            "consecutive_gateway_failure": rec.consecutive_gateway_failure,
            "consecutive_local_origin_failure": rec.consecutive_local_origin_failure,
        }

    def _count(self, rec: _Record, outcome: Outcome) -> EjectionReason | None:
        """Update the counters for ``outcome``; the detector it trips, if any."""
        limit_5xx, limit_gateway, limit_local = self._thresholds
        if outcome is Outcome.SUCCESS:
            rec.reset_counters()
            return None
        if outcome.is_local_origin:
            rec.consecutive_local_origin_failure += 1
            if _reached(rec.consecutive_local_origin_failure, limit_local):
                return "consecutive_local_origin_failure"
            return None
        rec.consecutive_local_origin_failure = 0
        rec.consecutive_5xx += 1
        if outcome is Outcome.GATEWAY_ERROR:
            rec.consecutive_gateway_failure += 1
        else:
            rec.consecutive_gateway_failure = 0
        if _reached(rec.consecutive_gateway_failure, limit_gateway):
            return "consecutive_gateway_failure"
        if _reached(rec.consecutive_5xx, limit_5xx):
            return "consecutive_5xx"
        return None

    def _may_eject(self, id: Hashable, now: float) -> bool:
        if self._max_percent == 0:
            return False
        ejected = 0
        for member in self._members:
            rec = self._records.get(member)
            if member != id and rec is not None:
                self._settle(member, rec, now)
                ejected += rec.ejected_until is not None
        members = len(self._members)
        if (ejected + 1) * 100 <= self._max_percent * members:
            return True
        return ejected == 0 and members >= 2

    def _settle(self, id: Hashable, rec: _Record, now: float) -> None:
        """Apply the passage of time: return from ejection, decay ``times_ejected``."""
        if rec.ejected_until is not None and now >= rec.ejected_until:
            rec.decay_from = rec.ejected_until
            rec.ejected_until = None
            rec.reset_counters()
            if self._on_return is not None:
                self._on_return(id, "its ejection time is over")
        if rec.ejected_until is None and rec.decay_from is not None:
            intervals = math.floor((now - rec.decay_from) / self._base)
            if intervals > 0:
                rec.times_ejected = max(0, rec.times_ejected - intervals)
                rec.decay_from += intervals * self._base
            if rec.times_ejected == 0:
                rec.decay_from = None

    def _prune(self) -> None:
        now = self._clock.now()
        for id in list(self._records):
            rec = self._records[id]
            self._settle(id, rec, now)
            if id not in self._members and rec.clean:
                del self._records[id]


def _reached(count: int, threshold: int) -> bool:
    """Threshold 0 disables a detector; a count past it still trips (a refused ejection retries)."""
    return threshold > 0 and count >= threshold
