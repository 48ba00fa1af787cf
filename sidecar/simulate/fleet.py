"""The simulated fleet of one upstream: how each endpoint answers, moment by moment.

Each ``SimEndpoint`` has a latency distribution (fixed, or log-normal through its p50 and
p99) and the faults active on it now. ``answer()`` says what the next attempt (or health
probe) meets: an answer with a status after a delay, a refused connection, a reset after a
delay, or no answer at all. ``UpstreamFleet`` also keeps what the discovery registry lists:
endpoints listed at the start or added later, minus those removed or ``gone``.

Nothing here decides anything the sidecar decides; it is the network and the servers.
Invariants: every random draw comes from the endpoint's own seeded streams (one for traffic,
one for probes), so what one endpoint meets does not depend on how much traffic another got,
and a run is reproducible; an endpoint draws one latency per answer, plus one number per
active fault that has a probability below 1.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from sidecar.simulate.scenario import EndpointSpec, FaultSpec, Latency, UpstreamSpec

# What an attempt meets.
ANSWER, REFUSE, RESET, HANG = 0, 1, 2, 3
_Z99 = 2.3263478740408408  # the standard normal's 99th percentile
PORT = 80  # simulated endpoints are "<name>:80"


class SimEndpoint:
    __slots__ = (
        "_factor",
        "_fixed",
        "_mu",
        "_probe_rng",
        "_rng",
        "_sigma",
        "_terminal",
        "active",
        "gone",
        "listed",
        "name",
        "priority",
        "weight",
    )

    def __init__(self, spec: EndpointSpec, latency: Latency, seed: str) -> None:
        self.name = spec.name
        self.weight = spec.weight
        self.priority = spec.priority
        self.listed = spec.in_discovery
        self.gone = 0  # active `gone` faults
        self.active: list[FaultSpec] = []  # in the order they started
        self._rng = random.Random(f"{seed}:traffic")
        self._probe_rng = random.Random(f"{seed}:probes")
        if latency.fixed is not None:
            self._fixed: float | None = latency.fixed
            self._mu = self._sigma = 0.0
        else:
            assert latency.p50 is not None and latency.p99 is not None
            self._fixed = latency.p50 if latency.p99 == latency.p50 else None
            self._mu = math.log(latency.p50)
            self._sigma = math.log(latency.p99 / latency.p50) / _Z99
        self._factor = 1.0
        self._terminal: tuple[FaultSpec, ...] = ()

    @property
    def registered(self) -> bool:
        """Whether the discovery registry lists it now."""
        return self.listed and not self.gone

    def start(self, fault: FaultSpec) -> None:
        self.active.append(fault)
        if fault.kind == "gone":
            self.gone += 1
        self._settle()

    def end(self, fault: FaultSpec) -> bool:
        """End ``fault`` if it is still active (``back`` may have ended it early)."""
        for i, active in enumerate(self.active):
            if active is fault:
                del self.active[i]
                if fault.kind == "gone":
                    self.gone -= 1
                self._settle()
                return True
        return False

    def back(self) -> None:
        """Every fault ends: the endpoint is up, healthy and listed again."""
        self.active.clear()
        self.gone = 0
        self._settle()

    def _settle(self) -> None:
        factor = 1.0
        for fault in self.active:
            if fault.kind == "slow":
                factor *= fault.factor or 1.0
        self._factor = factor
        self._terminal = tuple(f for f in self.active if f.kind != "slow")

    def answer(self, probe: bool = False) -> tuple[int, float, int]:
        """``(what, delay, status)`` for the next attempt, or probe, on this endpoint."""
        rng = self._probe_rng if probe else self._rng
        if self._fixed is not None:
            delay = self._fixed * self._factor
        else:
            delay = rng.lognormvariate(self._mu, self._sigma) * self._factor
        for fault in self._terminal:
            if probe and not fault.probes:
                continue
            kind = fault.kind
            if kind == "gone":
                return REFUSE, 0.0, 0
            if fault.probability < 1.0 and rng.random() >= fault.probability:
                continue
            if kind == "errors":
                return ANSWER, delay, fault.answer_status
            if kind == "refuse":
                return REFUSE, 0.0, 0
            if kind == "reset":
                return RESET, delay, 0
            return HANG, 0.0, 0
        return ANSWER, delay, 200


class UpstreamFleet:
    """The endpoints of one upstream, by name and by endpoint id."""

    def __init__(self, name: str, spec: UpstreamSpec, seed: int) -> None:
        self.name = name
        self.spec = spec
        self.endpoints = [
            SimEndpoint(ep, ep.latency or spec.latency, f"{seed}:{name}:{ep.name}")
            for ep in spec.endpoints
        ]
        self.by_name = {ep.name: ep for ep in self.endpoints}
        self.by_id = {endpoint_id(ep.name): ep for ep in self.endpoints}
        self.on_registry_change: list[Callable[[], None]] = []

    def registered(self) -> list[SimEndpoint]:
        return [ep for ep in self.endpoints if ep.registered]

    def changed(self, before: tuple[str, ...]) -> None:
        if tuple(ep.name for ep in self.registered()) != before:
            for callback in self.on_registry_change:
                callback()

    def registry(self) -> tuple[str, ...]:
        return tuple(ep.name for ep in self.registered())


def endpoint_id(name: str) -> str:
    return f"{name}:{PORT}"
