"""The admin listener: liveness, readiness, cluster state and the effective config.

Loopback by default. ``/ready`` is 503 until the listeners are up and every cluster had a
first endpoint snapshot, and again from the moment shutdown starts. A discovery outage
after the first snapshot does not make the sidecar unready: it serves the last good one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from sidecar.cluster import Cluster
from sidecar.config import redacted
from sidecar.telemetry.admin_routes import add_telemetry_routes

if TYPE_CHECKING:
    from sidecar.app import Sidecar

SIDECAR_KEY = web.AppKey("sidecar", object)


def build_admin_app(sidecar: Sidecar) -> web.Application:
    app = web.Application()
    app[SIDECAR_KEY] = sidecar
    app.router.add_get("/live", _live)
    app.router.add_get("/ready", _ready)
    app.router.add_get("/clusters", _clusters)
    app.router.add_get("/config", _config)
    add_telemetry_routes(app, sidecar.observer)  # "/", "/metrics", "/stats"
    return app


def _sidecar(request: web.Request) -> Sidecar:
    return request.app[SIDECAR_KEY]  # type: ignore[return-value]


async def _live(request: web.Request) -> web.Response:
    return web.Response(text="live\n")


async def _ready(request: web.Request) -> web.Response:
    sidecar = _sidecar(request)
    if sidecar.ready:
        return web.Response(text="ready\n")
    waiting = [n for n, s in sidecar.sources.items() if not s.watch.ready]
    reason = "draining" if sidecar.state.draining else (
        f"waiting for endpoints of: {', '.join(waiting)}" if waiting else "starting")
    return web.Response(status=503, text=f"not ready: {reason}\n")


async def _clusters(request: web.Request) -> web.Response:
    sidecar = _sidecar(request)
    return web.json_response({"clusters": [
        cluster_view(c, sidecar.sources[name].watch) for name, c in sidecar.clusters.items()
    ]})


async def _config(request: web.Request) -> web.Response:
    return web.json_response(redacted(_sidecar(request).config))


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
            if cluster.health is not None else "unchecked",
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
