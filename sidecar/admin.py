"""The admin listener: liveness, readiness, cluster state and the effective config.

Loopback by default. ``/ready`` is 503 until the listeners are up and every cluster had a
first endpoint snapshot, and again from the moment shutdown starts. A discovery outage
after the first snapshot does not make the sidecar unready: it serves the last good one.

``AdminHandler`` serves a fixed table of routes on the sidecar's own HTTP/1.1 server, so
the admin listener needs no web framework. Invariants: routes answer GET and HEAD only
(HEAD without a body); the query string plays no part in routing; unknown paths are 404,
other methods on a known path 405 with ``Allow``; a route that raises is logged and
answered with 500, never taking the listener down. Routes only read sidecar state.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from multidict import CIMultiDict

from sidecar.cluster import Cluster
from sidecar.config import redacted
from sidecar.listener.h1_server import H1Connection
from sidecar.listener.request import DownstreamRequest

if TYPE_CHECKING:
    from sidecar.app import Sidecar

log = logging.getLogger("pilotfish.admin")

TEXT = "text/plain; charset=utf-8"
JSON = "application/json; charset=utf-8"
HTML = "text/html; charset=utf-8"
ALLOWED_METHODS = ("GET", "HEAD")


class AdminReply(NamedTuple):
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


AdminRoute = Callable[[DownstreamRequest], Awaitable[AdminReply]]


def text_reply(text: str, status: int = 200) -> AdminReply:
    return AdminReply(status, TEXT, text.encode())


def json_reply(value: object, status: int = 200) -> AdminReply:
    return AdminReply(status, JSON, json.dumps(value).encode())


_NOT_FOUND = text_reply("404: Not Found", 404)
_NOT_ALLOWED = AdminReply(
    405, TEXT, b"405: Method Not Allowed", (("Allow", ", ".join(ALLOWED_METHODS)),)
)
_FAILED = text_reply("500: Internal Server Error", 500)


class AdminHandler:
    """An ``H1Server`` handler answering from a table ``path -> route``."""

    def __init__(self, routes: Mapping[str, AdminRoute]) -> None:
        self.routes = dict(routes)

    async def __call__(self, request: DownstreamRequest, out: H1Connection) -> None:
        route = self.routes.get(request.path)
        if route is None:
            reply = _NOT_FOUND
        elif request.method not in ALLOWED_METHODS:
            reply = _NOT_ALLOWED
        else:
            try:
                reply = await route(request)
            except Exception:
                log.exception("admin route %s failed", request.path)
                reply = _FAILED
        headers: CIMultiDict[str] = CIMultiDict({"Content-Type": reply.content_type})
        headers.extend(reply.headers)
        await out.send(reply.status, headers, reply.body)


def sidecar_routes(sidecar: Sidecar) -> dict[str, AdminRoute]:
    """``/live``, ``/ready``, ``/clusters`` and ``/config`` of one sidecar."""

    async def live(request: DownstreamRequest) -> AdminReply:
        return text_reply("live\n")

    async def ready(request: DownstreamRequest) -> AdminReply:
        if sidecar.ready:
            return text_reply("ready\n")
        waiting = [n for n, s in sidecar.sources.items() if not s.watch.ready]
        if sidecar.state.draining:
            reason = "draining"
        elif waiting:
            reason = f"waiting for endpoints of: {', '.join(waiting)}"
        else:
            reason = "starting"
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
        return json_reply(redacted(sidecar.config))

    return {"/live": live, "/ready": ready, "/clusters": clusters, "/config": config}


def cluster_view(cluster: Cluster, watch: Any) -> dict[str, Any]:
    endpoints = []
    for endpoint_id in cluster.member_ids:
        st = cluster.states[endpoint_id]
        ep = st.endpoint
        total = st.successes + st.failures
        view: dict[str, Any] = {
            "id": endpoint_id,
            "address": ep.address,
            "port": ep.port,
            "weight": ep.weight,
            "priority": ep.priority,
            "tags": list(ep.tags),
            "in_flight": st.in_flight,
            "requests": total,
            "success_rate": round(st.successes / total, 4) if total else None,
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
        "balancer": cluster.config.balancer.policy,
        "hash_on": str(hash_on) if (hash_on := cluster.config.balancer.hash_on) else None,
        "discovery": {
            "source": cluster.config.discovery.kind,
            "ready": watch.ready,
            "updates": watch.updates,
            "errors": watch.errors,
            "failing": watch.failing,
            "last_error": watch.last_error,
        },
        "panic": cluster.panic,
        "in_flight": sum(st.in_flight for st in cluster.states.values()),
        "retry_budget_remaining": cluster.budget.remaining(),
        "endpoints": endpoints,
    }
