"""The shape of a scenario file, as frozen dataclasses built by the config's own builder.

A scenario says what the world does to a configuration: how long the run lasts, the load
(rate over time, request mix, hash keys), and per upstream the fleet (endpoints, weights,
latency), its fault timeline and discovery events. ``docs/simulate.md`` lists every key.
Values are checked where they are read, so every error names its path and an unknown key
gets a did-you-mean, exactly as in a config file. Rules that span sections (an endpoint a
fault names must exist, an upstream must exist in the config) live in ``load.py``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from sidecar.config.build import (
    Builder,
    Duration,
    Nested,
    Size,
    at_least,
    between,
    field,
    positive,
)

FAULT_KINDS = ("errors", "refuse", "reset", "hang", "slow", "gone", "back")
DISCOVERY_KINDS = ("add", "remove", "unavailable")
ARRIVALS = ("poisson", "even")
DISTRIBUTIONS = ("uniform", "zipf")
MAX_KEYS = 1_000_000
MAX_DURATION = 30 * 86400.0
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_METHOD = re.compile(r"[A-Z]+")


def choice(options: tuple[str, ...]) -> Callable[[object], str]:
    """A parser accepting one of ``options``, with a did-you-mean for a near miss."""

    def parse(value: object) -> str:
        if isinstance(value, str) and value in options:
            return value
        close = difflib.get_close_matches(str(value), options, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown value {value!r}{hint} (expected one of: {', '.join(options)})")

    return parse


def _name(value: Any) -> str | None:
    if value is None or _NAME.fullmatch(value):
        return None
    return f"{value!r} is not a valid name (letters, digits, '.', '_' and '-')"


def _method(value: Any) -> str | None:
    return None if _METHOD.fullmatch(value) else f"expected an HTTP method like GET, got {value!r}"


def _key_count(value: Any) -> str | None:
    return None if 1 <= value <= MAX_KEYS else f"must be in 1..{MAX_KEYS}, got {value!r}"


def _run_length(value: Any) -> str | None:
    if 0 < value <= MAX_DURATION:
        return None
    return f"must be more than 0 and at most 30 days, got {value:g}s"


def _fraction(value: Any) -> str | None:
    return None if value is None or 0 < value <= 1 else f"must be in (0, 1], got {value!r}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Latency:
    """Fixed (``fixed``), or log-normal through ``p50`` and ``p99``; seconds."""

    fixed: Annotated[float, Duration] | None = field(None)
    p50: Annotated[float, Duration] | None = field(None, check=positive)
    p99: Annotated[float, Duration] | None = field(None, check=positive)

    def __post_init__(self) -> None:
        if self.fixed is not None:
            if self.p50 is not None or self.p99 is not None:
                raise ValueError("give either fixed, or p50 and p99, not both")
        elif self.p50 is None or self.p99 is None:
            raise ValueError("needs fixed, or both p50 and p99")
        elif self.p99 < self.p50:
            raise ValueError(f"need p50 <= p99, got p50={self.p50:g}s p99={self.p99:g}s")


def _latency(value: Any, builder: Builder, path: str) -> Latency:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        built = builder.build(Latency, {"fixed": value}, path)
    else:
        built = builder.build(Latency, value, path)
    if built is None:
        raise Nested
    return built


_latency.wants_builder = True  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointSpec:
    name: str = field(check=_name)
    weight: int = field(1, check=at_least(1))
    priority: int = field(0, check=at_least(0))
    latency: Latency | None = field(None, parse=_latency)  # None: the upstream's latency
    in_discovery: bool = field(True)  # listed when the run starts (else an `add` brings it)


def _endpoints(value: Any, builder: Builder, path: str) -> tuple[EndpointSpec, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError("expected a non-empty list of names or {name, weight, latency}")
    out: list[EndpointSpec] = []
    failed = False
    for i, item in enumerate(value):
        raw = {"name": item} if isinstance(item, str) else item
        built = builder.build(EndpointSpec, raw, f"{path}[{i}]")
        if built is None:
            failed = True
        else:
            out.append(built)
    if failed:
        raise Nested
    seen: dict[str, int] = {}
    for i, ep in enumerate(out):
        if ep.name in seen:
            builder.error(f"{path}[{i}].name", f"{ep.name!r} is already endpoints[{seen[ep.name]}]")
            failed = True
        seen[ep.name] = i
    if failed:
        raise Nested
    return tuple(out)


_endpoints.wants_builder = True  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """Which endpoints an event touches: one, a list, a leading fraction, or (none) all."""

    endpoint: str | None = field(None, check=_name)
    endpoints: tuple[str, ...] | None = field(None)
    fraction: float | None = field(None, check=_fraction)

    def _check_target(self) -> None:
        given = [n for n in ("endpoint", "endpoints", "fraction") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of endpoint, endpoints or fraction, not {given}")


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultSpec(Target):
    kind: str = field(parse=choice(FAULT_KINDS))
    at: Annotated[float, Duration] = field(0.0)
    duration: Annotated[float, Duration] | None = field(None, key="for", check=positive)
    every: Annotated[float, Duration] | None = field(None, check=positive)
    status: int | None = field(None, check=lambda v: None if v is None else between(100, 599)(v))
    probability: float = field(1.0, check=between(0, 1))
    factor: float | None = field(None, check=positive)
    probes: bool = field(True)  # health-check probes meet the fault too

    def __post_init__(self) -> None:
        self._check_target()
        if self.status is not None and self.kind != "errors":
            raise ValueError(f"status is only for kind errors, not {self.kind}")
        if self.factor is not None and self.kind != "slow":
            raise ValueError(f"factor is only for kind slow, not {self.kind}")
        if self.kind == "slow" and self.factor is None:
            raise ValueError("kind slow needs factor (how many times slower)")
        if self.probability != 1.0 and self.kind in ("slow", "gone", "back"):
            raise ValueError(f"probability does not apply to kind {self.kind}")
        if self.kind == "back" and (self.duration is not None or self.every is not None):
            raise ValueError("kind back is a moment: it takes no 'for' or 'every'")
        if self.every is not None and (self.duration is None or self.duration >= self.every):
            raise ValueError("every needs a 'for' shorter than itself")

    @property
    def answer_status(self) -> int:
        return self.status or 503


@dataclass(frozen=True, slots=True, kw_only=True)
class DiscoverySpec(Target):
    kind: str = field(parse=choice(DISCOVERY_KINDS))
    at: Annotated[float, Duration] = field(0.0)
    duration: Annotated[float, Duration] | None = field(None, key="for", check=positive)

    def __post_init__(self) -> None:
        self._check_target()
        if self.kind == "unavailable" and (self.endpoint or self.endpoints or self.fraction):
            raise ValueError("unavailable concerns the whole source: it names no endpoint")


@dataclass(frozen=True, slots=True, kw_only=True)
class PhaseSpec:
    duration: Annotated[float, Duration] | None = field(None, key="for", check=positive)
    rate: float | None = field(None, check=at_least(0))
    start: float | None = field(None, key="from", check=at_least(0))
    to: float | None = field(None, check=at_least(0))

    def __post_init__(self) -> None:
        ramp = self.start is not None or self.to is not None
        if ramp == (self.rate is not None) or (ramp and (self.start is None or self.to is None)):
            raise ValueError("a phase has a rate, or a ramp with from and to")


@dataclass(frozen=True, slots=True, kw_only=True)
class BurstSpec:
    at: Annotated[float, Duration] = field()
    duration: Annotated[float, Duration] = field(key="for", check=positive)
    rate: float = field(check=positive)  # added to the load's rate while the burst lasts


@dataclass(frozen=True, slots=True, kw_only=True)
class MixSpec:
    method: str = field("GET", check=_method)
    weight: float = field(1.0, check=positive)
    body: Annotated[int, Size] = field(0)


@dataclass(frozen=True, slots=True, kw_only=True)
class KeysSpec:
    count: int = field(check=_key_count)
    distribution: str = field("uniform", parse=choice(DISTRIBUTIONS))
    exponent: float = field(1.0, check=positive)  # Zipf's s


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadSpec:
    rate: float | None = field(None, check=at_least(0))
    phases: tuple[PhaseSpec, ...] | None = field(None)
    bursts: tuple[BurstSpec, ...] = field(())
    arrivals: str = field("poisson", parse=choice(ARRIVALS))
    mix: tuple[MixSpec, ...] = field((MixSpec(),))
    keys: KeysSpec | None = field(None)

    def __post_init__(self) -> None:
        if (self.rate is None) == (self.phases is None):
            raise ValueError("give either rate or phases")
        if self.phases is not None and not self.phases:
            raise ValueError("phases must not be empty")
        if not self.mix:
            raise ValueError("mix must not be empty")


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamSpec:
    endpoints: tuple[EndpointSpec, ...] = field(parse=_endpoints)
    latency: Latency = field(default_factory=lambda: Latency(fixed=0.005), parse=_latency)
    load: LoadSpec | None = field(None)  # None: the scenario's load
    faults: tuple[FaultSpec, ...] = field(())
    discovery: tuple[DiscoverySpec, ...] = field(())


def _upstreams(value: Any, builder: Builder, path: str) -> dict[str, UpstreamSpec]:
    if not isinstance(value, Mapping) or not value:
        raise ValueError("expected a mapping of upstream name to its fleet")
    out: dict[str, UpstreamSpec] = {}
    failed = False
    for name, raw in value.items():
        built = builder.build(UpstreamSpec, raw, f"{path}.{name}")
        if built is None:
            failed = True
        else:
            out[str(name)] = built
    if failed:
        raise Nested
    return out


_upstreams.wants_builder = True  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    description: str = field("")
    duration: Annotated[float, Duration] = field(check=_run_length)
    seed: int = field(1)
    load: LoadSpec | None = field(None)  # every upstream's, unless it has its own
    upstreams: dict[str, UpstreamSpec] = field(parse=_upstreams)
