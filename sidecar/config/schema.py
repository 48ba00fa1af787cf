"""The shape of a Pilotfish config file, as frozen dataclasses.

``Config`` is the root. Every field here appears in ``docs/configuration.md`` (a test
checks it). Cross-field rules live in ``__post_init__`` so the error names its section.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from discovery.hostport import split_host_port
from sidecar.config.build import (
    Builder,
    Duration,
    Nested,
    at_least,
    authority,
    between,
    field,
    non_empty,
    origin_path,
    positive,
)
from sidecar.config.policies import (
    BalancerConfig,
    CircuitBreakersConfig,
    HealthCheckConfig,
    OutlierDetectionConfig,
    RetriesConfig,
    TimeoutsConfig,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_host_port(value: object, *, allow_zero: bool = True) -> HostPort:
    if not isinstance(value, str):
        raise ValueError(f"expected 'host:port', got {value!r}")
    text = value.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected 'host:port', got {value!r}")
    number = int(port)
    if not (0 if allow_zero else 1) <= number <= 65535:
        raise ValueError(f"port must be in 1..65535, got {number}")
    return HostPort(host=host, port=number)


_port = between(0, 65535)


# RFC 9110 §5.1, §5.5: a field name is a token; a value never holds CR, LF or NUL.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BAD_VALUE = re.compile(r"[\r\n\x00]")


def _header_names(names: Iterable[str]) -> str | None:
    for name in names:
        if not _TOKEN.fullmatch(name):
            return f"{name!r} is not a valid header name"
    return None


def _header_fields(fields: dict[str, str]) -> str | None:
    if problem := _header_names(fields):
        return problem
    for name, value in fields.items():
        if _BAD_VALUE.search(value):
            return f"the value of {name} holds CR, LF or NUL"
    return None


def _host_port(value: str) -> str | None:
    try:
        split_host_port(value, 1)  # the port may be left out: each user has its default
    except ValueError as exc:
        return str(exc)
    return None


def _http_url(value: str | None) -> str | None:
    if value is None:
        return None
    url = urlsplit(value)
    if url.scheme not in ("http", "https") or not url.hostname:
        return f"expected an http:// or https:// URL, got {value!r}"
    try:
        url.port  # noqa: B018 - raises on a port that is not a number or out of range
    except ValueError as exc:
        return f"{value!r}: {exc}"
    return None


def _nameservers(value: tuple[str, ...]) -> str | None:
    if not value:
        return "must name at least one nameserver"
    for server in value:
        if problem := _host_port(server):
            return problem
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerConfig:
    address: str = field("127.0.0.1")
    port: int = field(0, check=_port)  # 0 = an ephemeral port (tests)


@dataclass(frozen=True, slots=True, kw_only=True)
class DownstreamTimeoutsConfig:
    """What a client may take (nginx's names and defaults, where Envoy has none)."""

    request_headers: Annotated[float, Duration] = field(60.0, check=positive)
    request_body_idle: Annotated[float, Duration] = field(60.0, check=positive)
    keepalive: Annotated[float, Duration] = field(75.0, check=positive)
    send_idle: Annotated[float, Duration] = field(60.0, check=positive)
    tunnel_idle: Annotated[float, Duration] = field(300.0, check=positive)


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenersConfig:
    inbound: ListenerConfig | None = field(None)
    admin: ListenerConfig = field(
        default_factory=lambda: ListenerConfig(address="127.0.0.1", port=15900)
    )
    egress: ListenerConfig | None = field(None)
    # Open client connections per listener (Envoy's max_connections); more are closed.
    max_connections: int = field(4096, check=at_least(1))
    timeouts: DownstreamTimeoutsConfig = field(default_factory=DownstreamTimeoutsConfig)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceCheckConfig:
    http: str | None = field(None)  # path on the inbound listener, e.g. /health
    ttl: Annotated[float, Duration] | None = field(None)
    interval: Annotated[float, Duration] = field(5.0)
    timeout: Annotated[float, Duration] = field(1.0)
    deregister_critical_after: Annotated[float, Duration] = field(60.0)

    def __post_init__(self) -> None:
        if (self.http is None) == (self.ttl is None):
            raise ValueError("exactly one of service.check.http or service.check.ttl is required")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceConfig:
    name: str = field(check=non_empty)
    address: str = field("127.0.0.1")
    port: int = field(check=between(1, 65535))
    health_path: str = field("/health")
    register: bool = field(False)
    # Address other services use to reach this sidecar's inbound listener (the address
    # registered in Consul). Default: the inbound listener's address, or this host's IP
    # when that is 0.0.0.0.
    advertise_address: str | None = field(None)
    id: str | None = field(None)  # default: <name>-<hostname>-<port>
    tags: tuple[str, ...] = field(())
    meta: dict[str, str] = field(default_factory=dict)
    check: ServiceCheckConfig | None = field(None)
    timeouts: TimeoutsConfig = field(default_factory=lambda: TimeoutsConfig(total=60.0))


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _endpoint_name(value: str | None) -> str | None:
    # Shown in log lines, metric labels and the admin page: one printable line.
    if value is None:
        return None
    if not value.strip():
        return "must not be empty"
    if _CONTROL.search(value):
        return "must not hold control characters"
    if len(value) > 253:
        return f"must be at most 253 characters, got {len(value)}"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class StaticEndpointConfig:
    address: str = field()
    port: int = field(check=between(1, 65535))
    weight: int = field(1, check=at_least(1))
    priority: int = field(0, check=at_least(0))
    name: str | None = field(None, check=_endpoint_name)  # None: named by host:port


def _static_list(value: Any, builder: Builder, path: str) -> tuple[StaticEndpointConfig, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(
            "expected a non-empty list of 'host:port' or {address, port, weight, priority, name}"
        )
    out: list[StaticEndpointConfig] = []
    failed = False
    for i, item in enumerate(value):
        sub = f"{path}[{i}]"
        try:
            if isinstance(item, str):
                hp = parse_host_port(item, allow_zero=False)
                out.append(StaticEndpointConfig(address=hp.host, port=hp.port))
                continue
            built = builder.build(StaticEndpointConfig, item, sub)
            if built is None:
                failed = True
            else:
                out.append(built)
        except ValueError as exc:
            builder.error(sub, str(exc))
            failed = True
    if failed:
        raise Nested
    return tuple(out)


_static_list.wants_builder = True  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsulDiscoveryConfig:
    service: str = field(check=non_empty)
    tags: tuple[str, ...] = field(())
    passing_only: bool = field(True)
    datacenter: str | None = field(None)
    wait: Annotated[float, Duration] = field(55.0, check=between(1, 600))  # Consul caps at 10m
    # After a burst of two, at most one read per min_interval: about ten a second by default.
    min_interval: Annotated[float, Duration] = field(0.1)


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsRefreshConfig:
    min: Annotated[float, Duration] = field(1.0)
    max: Annotated[float, Duration] = field(60.0)

    def __post_init__(self) -> None:
        if not 0 < self.min <= self.max:
            raise ValueError(f"need 0 < min <= max, got min={self.min:g}s max={self.max:g}s")


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsSrvDiscoveryConfig:
    name: str = field(check=non_empty)
    nameservers: tuple[str, ...] = field(("127.0.0.1:8600",), check=_nameservers)
    refresh: DnsRefreshConfig = field(default_factory=DnsRefreshConfig)
    timeout: Annotated[float, Duration] = field(2.0, check=positive)


@dataclass(frozen=True, slots=True, kw_only=True)
class DiscoveryConfig:
    static: tuple[StaticEndpointConfig, ...] | None = field(None, parse=_static_list)
    consul: ConsulDiscoveryConfig | None = field(None)
    dns_srv: DnsSrvDiscoveryConfig | None = field(None)

    def __post_init__(self) -> None:
        chosen = [n for n in ("static", "consul", "dns_srv") if getattr(self, n) is not None]
        if len(chosen) != 1:
            raise ValueError("exactly one of static, consul or dns_srv is required")

    @property
    def kind(self) -> str:
        return "static" if self.static is not None else "consul" if self.consul else "dns_srv"


@dataclass(frozen=True, slots=True, kw_only=True)
class HeaderRules:
    add: dict[str, str] = field(default_factory=dict, check=_header_fields)
    remove: tuple[str, ...] = field((), check=_header_names)


@dataclass(frozen=True, slots=True, kw_only=True)
class RewriteConfig:
    host: str | None = field(None, check=authority)
    strip_prefix: str | None = field(None, check=origin_path)


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamConfig:
    name: str = field(check=non_empty)
    listen: HostPort | None = field(None, parse=parse_host_port)
    hosts: tuple[str, ...] = field(())  # Host names routed here by the egress listener
    discovery: DiscoveryConfig = field()
    balancer: BalancerConfig = field(default_factory=BalancerConfig)
    request_headers: HeaderRules = field(default_factory=HeaderRules)
    response_headers: HeaderRules = field(default_factory=HeaderRules)
    rewrite: RewriteConfig = field(default_factory=RewriteConfig)
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)
    retries: RetriesConfig = field(default_factory=RetriesConfig)
    circuit_breakers: CircuitBreakersConfig = field(default_factory=CircuitBreakersConfig)
    outlier_detection: OutlierDetectionConfig | None = field(default_factory=OutlierDetectionConfig)
    health_check: HealthCheckConfig | None = field(None)
    panic_threshold: int = field(50, check=between(0, 100))


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsulTlsConfig:
    ca_file: str | None = field(None)
    cert_file: str | None = field(None)
    key_file: str | None = field(None)
    verify: bool = field(True)

    def __post_init__(self) -> None:
        if self.key_file and not self.cert_file:
            raise ValueError("key_file needs cert_file")


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsulConfig:
    address: str = field("127.0.0.1:8500", check=_host_port)
    scheme: Literal["http", "https"] = field("http")
    token: str | None = field(None)
    datacenter: str | None = field(None)
    tls: ConsulTlsConfig = field(default_factory=ConsulTlsConfig)


@dataclass(frozen=True, slots=True, kw_only=True)
class TracingConfig:
    enabled: bool = field(True)
    service_name: str | None = field(None)  # default: service.name
    endpoint: str | None = field(None, check=_http_url)  # OTLP/HTTP traces URL; None: no export
    sampler: Literal[
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    ] = field("parentbased_traceidratio")
    sampler_arg: float = field(1.0, check=between(0, 1))
    headers: dict[str, str] = field(default_factory=dict)
    # The batch span processor, named as in OpenTelemetry (``OTEL_BSP_*``). Exports are
    # smaller and more often than the SDK's 5 s default: encoding a batch holds the
    # interpreter, and a large one stalls the requests waiting behind it.
    schedule_delay: Annotated[float, Duration] = field(0.5, check=between(0.001, 3600))
    max_queue_size: int = field(2048, check=at_least(1))
    max_export_batch_size: int = field(128, check=at_least(1))
    export_timeout: Annotated[float, Duration] = field(30.0, check=between(0.001, 3600))


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessLogConfig:
    enabled: bool = field(True)
    path: str = field("-")  # "-" = stdout


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    service: ServiceConfig = field()
    listeners: ListenersConfig = field(default_factory=ListenersConfig)
    upstreams: tuple[UpstreamConfig, ...] = field(())
    consul: ConsulConfig = field(default_factory=ConsulConfig)
    tracing: TracingConfig = field(default_factory=TracingConfig)
    access_log: AccessLogConfig = field(default_factory=AccessLogConfig)
    drain_timeout: Annotated[float, Duration] = field(10.0)
    discovery_timeout: Annotated[float, Duration] = field(5.0)  # wait for first snapshots
    log_level: Literal["debug", "info", "warning", "error"] = field("info")
