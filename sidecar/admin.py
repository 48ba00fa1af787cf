"""The admin listener: liveness, readiness, cluster state and the effective config.

Loopback by default. ``/ready`` is 503 until the listeners are up and every routed cluster
had a first endpoint snapshot, and again from the moment shutdown starts; it answers with
the sidecar's own reason (``sidecar.readiness``), the one its log line gives. A discovery
outage after the first snapshot does not make the sidecar unready: it serves the last good
one. ``/clusters`` names each endpoint and gives its state in the words of
``sidecar.endpoint_state``. ``/config`` is the running configuration (secrets redacted)
with its version and hash;
``/events`` the last state changes; ``POST /reload`` reads the config file again and
applies it, for loopback peers only.

``AdminHandler`` serves a fixed table of routes on the sidecar's own HTTP/1.1 server, so
the admin listener needs no web framework. Invariants: a route answers GET and HEAD (HEAD
without a body), or POST when it is a ``Post`` route; the query string plays no part in
routing; unknown paths are 404, other methods on a known path 405 with ``Allow``; a route
that raises is logged and answered with 500, never taking the listener down. Only
``POST`` routes change anything. The sidecar is read through ``SidecarView``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from multidict import CIMultiDict

from sidecar.admin_access import loopback_only
from sidecar.admin_reply import (
    ALLOWED_METHODS,
    HTML,
    JSON,
    TEXT,
    AdminReply,
    AdminRoute,
    Post,
    json_reply,
    text_reply,
)
from sidecar.cluster import Cluster
from sidecar.config import redacted
from sidecar.config.schema import Config
from sidecar.endpoint_state import endpoint_state
from sidecar.events import EventBus
from sidecar.listener.h1_server import H1Connection
from sidecar.listener.request import DownstreamRequest

__all__ = [
    "HTML",
    "JSON",
    "TEXT",
    "AdminHandler",
    "AdminReply",
    "AdminRoute",
    "Post",
    "SidecarView",
    "json_reply",
    "sidecar_routes",
    "text_reply",
]

if TYPE_CHECKING:
    from discovery.source import Source
    from sidecar.control.reload import ReloadOutcome


class SidecarView(Protocol):
    """What the admin routes read of the sidecar (and the one thing they ask of it)."""

    config: Config
    version: int
    config_hash: str
    loaded_at: float
    events: EventBus

    @property
    def clusters(self) -> Mapping[str, Cluster]: ...

    @property
    def sources(self) -> Mapping[str, Source]: ...

    @property
    def ready(self) -> bool: ...

    def readiness(self) -> str | None: ...

    async def reload(self) -> ReloadOutcome: ...


log = logging.getLogger("pilotfish.admin")

_NOT_FOUND = text_reply("404: Not Found", 404)
_NOT_ALLOWED = AdminReply(
    405, TEXT, b"405: Method Not Allowed", (("Allow", ", ".join(ALLOWED_METHODS)),)
)
_POST_ONLY = AdminReply(405, TEXT, b"405: Method Not Allowed", (("Allow", "POST"),))
_FAILED = text_reply("500: Internal Server Error", 500)


class AdminHandler:
    """An ``H1Server`` handler answering from a table ``path -> route``."""

    def __init__(self, routes: Mapping[str, AdminRoute | Post]) -> None:
        self.routes = dict(routes)

    async def __call__(self, request: DownstreamRequest, out: H1Connection) -> None:
        entry = self.routes.get(request.path)
        if entry is None:
            reply = _NOT_FOUND
        elif isinstance(entry, Post) and request.method != "POST":
            reply = _POST_ONLY
        elif not isinstance(entry, Post) and request.method not in ALLOWED_METHODS:
            reply = _NOT_ALLOWED
        else:
            route = entry.route if isinstance(entry, Post) else entry
            try:
                reply = await route(request)
            except Exception:
                log.exception("admin route %s failed", request.path)
                reply = _FAILED
        headers: CIMultiDict[str] = CIMultiDict({"Content-Type": reply.content_type})
        headers.extend(reply.headers)
        await out.send(reply.status, headers, reply.body)


def sidecar_routes(sidecar: SidecarView) -> dict[str, AdminRoute | Post]:
    """``/live``, ``/ready``, ``/clusters``, ``/config``, ``/events`` and ``POST /reload``."""

    async def live(request: DownstreamRequest) -> AdminReply:
        return text_reply("live\n")

    async def ready(request: DownstreamRequest) -> AdminReply:
        reason = sidecar.readiness()
        if reason is None:
            return text_reply("ready\n")
        return text_reply(f"not ready: {reason}\n", 503)

    async def clusters(request: DownstreamRequest) -> AdminReply:
        return json_reply(
            {
                "clusters": [
                    cluster_view(c, sidecar.sources[name].watch)
                    for name, c in sidecar.clusters.items()
                ]
            }
        )

    async def config(request: DownstreamRequest) -> AdminReply:
        return json_reply(
            {
                "version": sidecar.version,
                "hash": sidecar.config_hash,
                "loaded_at": sidecar.loaded_at,
                "config": redacted(sidecar.config),
            }
        )

    async def events(request: DownstreamRequest) -> AdminReply:
        return json_reply({"events": [e.as_dict() for e in sidecar.events.history]})

    async def reload(request: DownstreamRequest) -> AdminReply:
        outcome = await sidecar.reload()
        body = {"applied": outcome.ok, "summary": outcome.summary, "errors": list(outcome.errors)}
        if outcome.ok:
            body["version"] = sidecar.version
            body["hash"] = sidecar.config_hash
        return json_reply(body, 200 if outcome.ok else 422)

    return {
        "/live": live,
        "/ready": ready,
        "/clusters": clusters,
        "/config": config,
        "/events": events,
        "/reload": Post(loopback_only(reload)),
    }


def cluster_view(cluster: Cluster, watch: Any) -> dict[str, Any]:
    endpoints = []
    for endpoint_id in cluster.member_ids:
        st = cluster.states[endpoint_id]
        ep = st.endpoint
        total = st.successes + st.failures
        view: dict[str, Any] = {
            "id": endpoint_id,
            "name": ep.name,
            "address": ep.address,
            "port": ep.port,
            "weight": ep.weight,
            "priority": ep.priority,
            "tags": list(ep.tags),
            "in_flight": st.in_flight,
            "requests": total,
            "success_rate": round(st.successes / total, 4) if total else None,
            "state": endpoint_state(cluster, endpoint_id),
            "available": cluster.available(endpoint_id),
            "health": ("healthy" if cluster.health.is_healthy(endpoint_id) else "unhealthy")
            if cluster.health is not None
            else "unchecked",
            "breaker": st.breaker.state if st.breaker is not None else "disabled",
        }
        if cluster.outlier is not None:
            view["outlier"] = cluster.outlier.snapshot(endpoint_id)
        endpoints.append(view)
    return {
        "name": cluster.name,
        "balancer": cluster.balancer_policy,
        "hash_on": str(hash_on)
        if cluster.config is not None and (hash_on := cluster.config.balancer.hash_on)
        else None,
        "discovery": {
            "source": cluster.config.discovery.kind if cluster.config is not None else None,
            "ready": watch.ready,
            "updates": watch.updates,
            "errors": watch.errors,
            "failing": watch.failing,
            "last_error": watch.last_error,
        },
        "panic": cluster.panic,
        "in_flight": sum(st.in_flight for st in cluster.states.values()),
        "retry_budget_remaining": cluster.budget.remaining() if cluster.budget else None,
        "endpoints": endpoints,
    }
