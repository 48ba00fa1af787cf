"""Config of one cluster's policies: balancer, timeouts, retries, limits, outlier, health checks.

Names and defaults follow Envoy where the concept is the same; ``docs/configuration.md``
lists each one. Instances are frozen and built once by ``sidecar.config.load``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Literal

from resilience.balancer import POLICIES
from sidecar.config.build import (
    Duration,
    Size,
    at_least,
    authority,
    between,
    field,
    origin_path,
    positive,
)

RETRY_ON = ("5xx", "connect-failure", "gateway-error", "reset", "retriable-status-codes", "timeout")
HASH_SOURCES = ("cookie", "header", "path", "query", "source_ip")


@dataclass(frozen=True, slots=True, kw_only=True)
class HashOn:
    source: str  # one of HASH_SOURCES
    name: str = ""  # header/cookie/query parameter name

    def __str__(self) -> str:
        return f"{self.source}:{self.name}" if self.name else self.source


def parse_hash_on(value: object) -> HashOn | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(
            "expected 'header:NAME', 'cookie:NAME', 'query:NAME', 'source_ip' or 'path', "
            f"got {value!r}"
        )
    source, _, name = value.partition(":")
    source = source.strip()
    if source not in HASH_SOURCES:
        raise ValueError(
            f"unknown hash source {source!r}; expected one of: {', '.join(HASH_SOURCES)}"
        )
    if source in ("header", "cookie", "query") and not name.strip():
        raise ValueError(f"{source} needs a name, e.g. '{source}:x-user-id'")
    if source in ("source_ip", "path") and name:
        raise ValueError(f"{source} takes no name, got {value!r}")
    name = name.strip()
    return HashOn(source=source, name=name.lower() if source == "header" else name)


def _policy(value: object) -> str:
    if value not in POLICIES:
        raise ValueError(f"unknown policy {value!r}; expected one of: {', '.join(POLICIES)}")
    return str(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class RingConfig:
    min_ring_size: int = field(1024, check=at_least(1))
    max_ring_size: int = field(8_388_608, check=at_least(1))

    def __post_init__(self) -> None:
        if self.min_ring_size > self.max_ring_size:
            raise ValueError(
                f"need min_ring_size <= max_ring_size, got {self.min_ring_size} "
                f"and {self.max_ring_size}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class BalancerConfig:
    policy: str = field("round_robin", parse=_policy)
    hash_on: HashOn | None = field(None, parse=parse_hash_on)
    ring: RingConfig = field(default_factory=RingConfig)

    def __post_init__(self) -> None:
        if self.policy == "ring_hash" and self.hash_on is None:
            raise ValueError("balancer.hash_on is required with policy ring_hash")


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeoutsConfig:
    connect: Annotated[float, Duration] = field(1.0)
    total: Annotated[float, Duration] = field(15.0)  # 0 = no total deadline
    idle: Annotated[float, Duration] = field(4.0)  # pooled upstream connections
    stream_idle: Annotated[float, Duration] = field(300.0)  # response body silence; 0 = none


@dataclass(frozen=True, slots=True, kw_only=True)
class BackoffConfig:
    base: Annotated[float, Duration] = field(0.025, check=positive)
    max: Annotated[float, Duration] = field(0.25)

    def __post_init__(self) -> None:
        if self.max < self.base:
            raise ValueError(f"need base <= max, got base={self.base:g}s max={self.max:g}s")


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryBudgetConfig:
    ratio: float = field(0.2, check=between(0, 1))
    min_per_second: float = field(10.0, check=at_least(0))
    window: Annotated[float, Duration] = field(10.0, check=positive)


def _retry_on(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list of: {', '.join(RETRY_ON)}")
    bad = [v for v in value if v not in RETRY_ON]
    if bad:
        raise ValueError(f"unknown condition {bad[0]!r}; expected one of: {', '.join(RETRY_ON)}")
    return tuple(str(v) for v in value)


def _status_codes(value: object) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and 100 <= v <= 599 for v in value
    ):
        raise ValueError(f"expected a list of HTTP status codes (100..599), got {value!r}")
    return tuple(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetriesConfig:
    attempts: int = field(2, check=at_least(0))  # retries after the first try
    retry_on: tuple[str, ...] = field(
        ("connect-failure", "reset", "gateway-error", "retriable-status-codes"), parse=_retry_on
    )
    retriable_status_codes: tuple[int, ...] = field((), parse=_status_codes)
    per_try_timeout: Annotated[float, Duration] = field(1.0)  # 0 = only the total deadline
    backoff: BackoffConfig = field(default_factory=BackoffConfig)
    budget: RetryBudgetConfig = field(default_factory=RetryBudgetConfig)
    max_replay_bytes: Annotated[int, Size] = field(64 * 1024)


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointBreakerConfig:
    fail_max: int = field(5, check=at_least(1))
    reset_timeout: Annotated[float, Duration] = field(30.0)
    success_threshold: int = field(1, check=at_least(1))


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitBreakersConfig:
    max_requests: int = field(1024, check=at_least(1))
    # Connections to one endpoint (Envoy's per-host max_connections); a request finding
    # them all busy waits — is pending — and at most max_pending requests may wait.
    max_connections: int = field(1024, check=at_least(1))
    max_pending: int = field(1024, check=at_least(0))
    endpoint: EndpointBreakerConfig | None = field(default_factory=EndpointBreakerConfig)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutlierDetectionConfig:
    consecutive_5xx: int = field(5, check=at_least(1))
    consecutive_gateway_failure: int = field(5, check=at_least(1))
    consecutive_local_origin_failure: int = field(5, check=at_least(1))
    base_ejection_time: Annotated[float, Duration] = field(30.0, check=positive)
    max_ejection_time: Annotated[float, Duration] = field(300.0)
    max_ejection_percent: int = field(50, check=between(0, 100))
    # Envoy's default too: a passing active health check returns an ejected host at once.
    successful_active_health_check_uneject_host: bool = field(True)


_RANGE = re.compile(r"\s*(\d{3})\s*(?:-\s*(\d{3}))?\s*")


def _statuses(value: object) -> tuple[tuple[int, int], ...]:
    if not isinstance(value, list) or not value:
        raise ValueError("expected a list of statuses or ranges like [200-399]")
    out = []
    for item in value:
        m = _RANGE.fullmatch(str(item)) if isinstance(item, int | str) else None
        if not m:
            raise ValueError(f"expected a status or a range like 200-399, got {item!r}")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if not 100 <= lo <= hi <= 599:
            raise ValueError(f"status range {item!r} must lie in 100..599, low to high")
        out.append((lo, hi))
    return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpProbeConfig:
    path: str = field("/health", check=origin_path)
    expected_statuses: tuple[tuple[int, int], ...] = field(((200, 399),), parse=_statuses)
    host: str | None = field(None, check=authority)


@dataclass(frozen=True, slots=True, kw_only=True)
class TcpProbeConfig:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthCheckConfig:
    http: HttpProbeConfig | None = field(None)
    tcp: TcpProbeConfig | None = field(None)
    interval: Annotated[float, Duration] = field(5.0)
    timeout: Annotated[float, Duration] = field(1.0)
    jitter: float = field(0.1, parse=lambda v: _percent(v))
    healthy_threshold: int = field(2, check=at_least(1))
    unhealthy_threshold: int = field(3, check=at_least(1))
    initial_state: Literal["healthy", "unhealthy"] = field("healthy")

    def __post_init__(self) -> None:
        if (self.http is None) == (self.tcp is None):
            raise ValueError("exactly one of health_check.http or health_check.tcp is required")
        if self.interval <= 0:
            raise ValueError("health_check.interval must be > 0")


def _percent(value: object) -> float:
    if isinstance(value, str) and value.strip().endswith("%"):
        value = float(value.strip()[:-1]) / 100
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"expected a fraction 0..1 or a percentage like '10%', got {value!r}")
    return float(value)
