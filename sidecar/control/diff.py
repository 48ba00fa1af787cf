"""What differs between the running configuration and a new one, piece by piece (pure).

A reload changes only what differs, so the comparison is made per piece of an upstream:
each piece is what one part of the running cluster is built from, and a piece that is the
same keeps that part — and its state — as it is.

| piece | what it rebuilds |
| --- | --- |
| ``discovery`` | the discovery source (the endpoints' state stays, by id) |
| ``balancer`` | the balancer (ring) over the current endpoints |
| ``breakers`` | every endpoint's breaker (closed again) |
| ``outlier_detection`` | the outlier detector (ejections end, history is forgotten) |
| ``health_check`` | the health table and its checker (verdicts start again) |
| ``retries`` | the retry policy and its budget |
| ``timeouts`` | the stack's total and per-try timeouts |
| ``connections`` | the pooled client (connect/idle/stream timeouts, connection limits) |
| ``limits`` | the cluster's ``max_requests`` admission limit |
| ``panic_threshold``, ``headers``, ``rewrite``, ``hosts``, ``listen`` | only the route |

Everything else of a ``Config`` (listeners, service, telemetry, log level) is compared
whole, section by section.
"""

from __future__ import annotations

from dataclasses import dataclass

from sidecar.config.schema import Config, UpstreamConfig


def upstream_pieces(
    old: UpstreamConfig, new: UpstreamConfig, *, consul_changed: bool = False
) -> tuple[str, ...]:
    """The pieces of an upstream that differ, in the table's order."""
    pieces = []
    if old.discovery != new.discovery or (consul_changed and new.discovery.consul is not None):
        pieces.append("discovery")
    if old.balancer != new.balancer:
        pieces.append("balancer")
    if old.circuit_breakers.endpoint != new.circuit_breakers.endpoint:
        pieces.append("breakers")
    if old.outlier_detection != new.outlier_detection:
        pieces.append("outlier_detection")
    if old.health_check != new.health_check:
        pieces.append("health_check")
    if old.retries != new.retries:
        pieces.append("retries")
    if old.timeouts.total != new.timeouts.total:
        pieces.append("timeouts")
    if _connections(old) != _connections(new):
        pieces.append("connections")
    if old.circuit_breakers.max_requests != new.circuit_breakers.max_requests:
        pieces.append("limits")
    if old.panic_threshold != new.panic_threshold:
        pieces.append("panic_threshold")
    if (old.request_headers, old.response_headers) != (new.request_headers, new.response_headers):
        pieces.append("headers")
    if old.rewrite != new.rewrite:
        pieces.append("rewrite")
    if old.hosts != new.hosts:
        pieces.append("hosts")
    if old.listen != new.listen:
        pieces.append("listen")
    return tuple(pieces)


def _connections(u: UpstreamConfig) -> tuple[object, ...]:
    t, cb = u.timeouts, u.circuit_breakers
    return (t.connect, t.idle, t.stream_idle, cb.max_connections, cb.max_pending)


@dataclass(frozen=True, slots=True)
class UpstreamDelta:
    name: str
    pieces: tuple[str, ...]
    endpoints_added: int = 0  # static discovery only: counted from the lists
    endpoints_removed: int = 0

    def describe(self) -> str:
        words = [f"{', '.join(self.pieces)} changed"]
        if self.endpoints_added or self.endpoints_removed:
            words.append(f"endpoints +{self.endpoints_added} -{self.endpoints_removed}")
        return f"upstream {self.name}: {'; '.join(words)}"


@dataclass(frozen=True, slots=True)
class ConfigDelta:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[UpstreamDelta, ...]
    sections: tuple[str, ...]  # other top-level sections that differ

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.sections)

    def summary(self) -> str:
        """One line: what the reload changes."""
        parts = [delta.describe() for delta in self.changed]
        parts += [f"upstream {name} added" for name in self.added]
        parts += [f"upstream {name} removed" for name in self.removed]
        parts += [f"{section} changed" for section in self.sections]
        return "; ".join(parts) or "nothing changed"


_SECTIONS = (
    "service",
    "listeners",
    "consul",
    "tracing",
    "access_log",
    "drain_timeout",
    "discovery_timeout",
    "log_level",
)


def config_delta(old: Config, new: Config) -> ConfigDelta:
    before = {u.name: u for u in old.upstreams}
    after = {u.name: u for u in new.upstreams}
    consul_changed = old.consul != new.consul
    changed = []
    for name, upstream in after.items():
        previous = before.get(name)
        if previous is None:
            continue
        pieces = upstream_pieces(previous, upstream, consul_changed=consul_changed)
        if pieces:
            added, removed = _static_churn(previous, upstream)
            changed.append(UpstreamDelta(name, pieces, added, removed))
    return ConfigDelta(
        added=tuple(n for n in after if n not in before),
        removed=tuple(n for n in before if n not in after),
        changed=tuple(changed),
        sections=tuple(s for s in _SECTIONS if getattr(old, s) != getattr(new, s)),
    )


def _static_churn(old: UpstreamConfig, new: UpstreamConfig) -> tuple[int, int]:
    a, b = old.discovery.static, new.discovery.static
    if a is None or b is None:
        return 0, 0
    ids_a = {(e.address, e.port) for e in a}
    ids_b = {(e.address, e.port) for e in b}
    return len(ids_b - ids_a), len(ids_a - ids_b)
