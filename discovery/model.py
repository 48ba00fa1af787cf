"""Endpoints and the immutable snapshots sources publish.

An ``EndpointSet`` is replaced whole, never mutated. ``Endpoint.id`` (``host:port``) is the
stable key under which health, outlier and breaker state survive a snapshot change.
``Endpoint.name`` is what an operator calls it — a Consul service ID or node, an SRV
target, a name given in the config — and ``host:port`` when discovery knows none. It is a
label, not an identity: two endpoints may share a name, and a name may change while the
endpoint (its id) and its state stay.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

_EMPTY: Mapping[str, str] = MappingProxyType({})


def endpoint_id(address: str, port: int) -> str:
    if ":" in address:  # IPv6 literal
        return f"[{address}]:{port}"
    return f"{address}:{port}"


@dataclass(frozen=True, slots=True)
class Endpoint:
    address: str
    port: int
    weight: int = 1
    # Lower is preferred; higher groups are used only when lower ones have no available
    # endpoint (RFC 2782 SRV priority, Envoy priority levels).
    priority: int = 0
    tags: tuple[str, ...] = ()
    meta: Mapping[str, str] = field(default_factory=lambda: _EMPTY, compare=False, hash=False)
    zone: str | None = None
    name: str = ""  # "": the id
    id: str = field(init=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be in 1..65535, got {self.port}")
        if self.weight < 1:
            raise ValueError(f"weight must be >= 1, got {self.weight}")
        object.__setattr__(self, "id", endpoint_id(self.address, self.port))
        if not self.name:
            object.__setattr__(self, "name", self.id)
        if not isinstance(self.meta, MappingProxyType):
            object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))


@dataclass(frozen=True, slots=True)
class EndpointSet:
    """One snapshot of a cluster's endpoints, ordered by id for stable comparisons."""

    endpoints: tuple[Endpoint, ...]
    source: str = "static"

    @classmethod
    def of(cls, endpoints: Iterable[Endpoint], source: str = "static") -> EndpointSet:
        unique: dict[str, Endpoint] = {}
        for ep in endpoints:
            unique[ep.id] = ep  # a duplicate id keeps its last description
        return cls(tuple(sorted(unique.values(), key=lambda e: e.id)), source)

    def __len__(self) -> int:
        return len(self.endpoints)

    def same_content(self, other: EndpointSet | None) -> bool:
        """True when ``other`` describes the same endpoints (including weights, tags, meta)."""
        if other is None or len(other.endpoints) != len(self.endpoints):
            return False
        for a, b in zip(self.endpoints, other.endpoints, strict=True):
            if a != b or a.meta != b.meta:
                return False
        return True
