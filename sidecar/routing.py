"""Where a request goes: ``Route``\\ s, the routers of the listeners, and the route table.

A ``Route`` is everything per upstream that a request needs — the running cluster, its
stack of policy layers, header rules, rewrites, the hash-key function, how much body may be
held for a replay — compiled once from the upstream's configuration. A listener's
``Router`` picks the route of a request: the one route of an upstream's own listener or of
the inbound listener, or by Host (the absolute-form authority has replaced it by then) on
the egress listener.

``RouteTable`` maps listener names to routers and is frozen; ``Routing`` holds the current
one and a reload swaps it in one step. A request reads the table once, when it starts,
and finishes on the route (and so the cluster, stack and rules) it got then.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from sidecar.pipeline.errors import NoRoute
from sidecar.pipeline.hashing import KeyOf, key_function
from sidecar.pipeline.headers import HeaderRules
from sidecar.pipeline.layers import Handler

if TYPE_CHECKING:
    from sidecar.cluster import Cluster
    from sidecar.config.schema import UpstreamConfig
    from sidecar.listener.request import DownstreamRequest


class Route:
    """Everything per-cluster the handler needs, compiled once from config."""

    __slots__ = (
        "cluster",
        "key_of",
        "max_replay",
        "request_rules",
        "response_rules",
        "rewrite_host",
        "stack",
        "strip_prefix",
    )

    def __init__(self, cluster: Cluster, stack: Handler, config: UpstreamConfig) -> None:
        self.cluster = cluster
        self.stack = stack
        self.request_rules = HeaderRules(config.request_headers.add, config.request_headers.remove)
        self.response_rules = HeaderRules(
            config.response_headers.add, config.response_headers.remove
        )
        host = config.rewrite.host
        self.rewrite_host = host.encode("utf-8", "surrogateescape") if host else None
        self.strip_prefix = (config.rewrite.strip_prefix or "").rstrip("/") or None
        self.key_of: KeyOf | None = key_function(config.balancer.hash_on)
        self.max_replay = config.retries.max_replay_bytes if config.retries.attempts else 0


Router = Callable[["DownstreamRequest"], Route]


def fixed(route: Route) -> Router:
    return lambda request: route


def by_host(routes: Mapping[str, Route]) -> Router:
    """Egress routing: only configured upstreams are reachable, by their Host name."""

    def route(request: DownstreamRequest) -> Route:
        host = (request.host or "").lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        found = routes.get(name) or routes.get(host)
        if found is None:
            raise NoRoute(f"no upstream is configured for Host {host!r}")
        return found

    return route


def _unrouted(request: DownstreamRequest) -> Route:
    raise NoRoute("this listener no longer routes anywhere (it is closing)")


class RouteTable:
    """Listener name -> router; never changed once built."""

    __slots__ = ("routers", "version")

    def __init__(self, routers: Mapping[str, Router], version: int = 0) -> None:
        self.routers = MappingProxyType(dict(routers))
        self.version = version

    def router(self, listener: str) -> Router:
        return self.routers.get(listener, _unrouted)


class Routing:
    """The current route table; ``table`` is replaced whole, in one assignment."""

    __slots__ = ("table",)

    def __init__(self, table: RouteTable | None = None) -> None:
        self.table = table or RouteTable({})
