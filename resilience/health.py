"""Active health-check verdicts: the threshold state machine, not the probing.

A probe result is fed to ``record(ok)``. An endpoint turns unhealthy after
``unhealthy_threshold`` consecutive failed probes and healthy again after
``healthy_threshold`` consecutive passing ones (Envoy's thresholds); a single odd result
does not flip it. ``record`` returns a ``Transition`` only when the verdict changes, so the
shell logs and counts changes without comparing states itself.

``HealthTable`` keeps one ``HealthState`` per current member. An endpoint that leaves is
forgotten: unlike outlier history, a health verdict is re-established by the next probes,
and a returning endpoint starts again from ``initial_healthy``.

Invariants: the consecutive counts are never both non-zero; a transition is reported
exactly once per change of verdict.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Transition:
    healthy: bool


class HealthState:
    __slots__ = ("_failures", "_healthy", "_healthy_threshold", "_passes", "_unhealthy_threshold")

    def __init__(
        self, healthy_threshold: int = 2, unhealthy_threshold: int = 3, initial_healthy: bool = True
    ) -> None:
        if healthy_threshold < 1 or unhealthy_threshold < 1:
            raise ValueError("health thresholds must be >= 1")
        self._healthy_threshold = healthy_threshold
        self._unhealthy_threshold = unhealthy_threshold
        self._healthy = initial_healthy
        self._passes = 0
        self._failures = 0

    @property
    def healthy(self) -> bool:
        return self._healthy

    def record(self, ok: bool) -> Transition | None:
        if ok:
            self._passes += 1
            self._failures = 0
            if not self._healthy and self._passes >= self._healthy_threshold:
                self._healthy = True
                return Transition(healthy=True)
        else:
            self._failures += 1
            self._passes = 0
            if self._healthy and self._failures >= self._unhealthy_threshold:
                self._healthy = False
                return Transition(healthy=False)
        return None

    def snapshot(self) -> dict[str, Any]:
        return {
            "healthy": self._healthy,
            "consecutive_passes": self._passes,
            "consecutive_failures": self._failures,
        }


class HealthTable:
    """Health verdicts of the current members, keyed by endpoint id."""

    def __init__(
        self, healthy_threshold: int = 2, unhealthy_threshold: int = 3, initial_healthy: bool = True
    ) -> None:
        # Validate once here rather than on the first member.
        HealthState(healthy_threshold, unhealthy_threshold, initial_healthy)
        self._healthy_threshold = healthy_threshold
        self._unhealthy_threshold = unhealthy_threshold
        self._initial_healthy = initial_healthy
        self._states: dict[Hashable, HealthState] = {}

    def set_members(self, ids: Iterable[Hashable]) -> None:
        members = set(ids)
        for id in list(self._states):
            if id not in members:
                del self._states[id]
        for id in members:
            if id not in self._states:
                self._states[id] = HealthState(
                    self._healthy_threshold, self._unhealthy_threshold, self._initial_healthy
                )

    def record(self, id: Hashable, ok: bool) -> Transition | None:
        """Feed one probe result; results for non-members (a late probe) are ignored."""
        state = self._states.get(id)
        return None if state is None else state.record(ok)

    def is_healthy(self, id: Hashable) -> bool:
        state = self._states.get(id)
        return self._initial_healthy if state is None else state.healthy

    def snapshot(self, id: Hashable) -> dict[str, Any] | None:
        state = self._states.get(id)
        return None if state is None else state.snapshot()


def jittered_interval(interval: float, jitter_fraction: float, rng: random.Random) -> float:
    """Probe interval plus up to ``jitter_fraction`` of it, so probes of many sidecars spread.

    Jitter only lengthens the interval, as Envoy's ``interval_jitter_percent`` does: a
    probe is never sent more often than configured.
    """
    if interval < 0 or not 0.0 <= jitter_fraction <= 1.0:
        raise ValueError("need interval >= 0 and 0 <= jitter_fraction <= 1")
    return interval + rng.uniform(0.0, interval * jitter_fraction)
