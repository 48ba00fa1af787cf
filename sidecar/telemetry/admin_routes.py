"""Admin-listener routes for telemetry: ``/metrics``, ``/stats`` and the live page at ``/``.

``/metrics`` is the Prometheus text format of the sidecar's private registry. ``/stats``
is the JSON the live page polls for request and error totals (the page turns successive
totals into rates); cluster state it reads from ``/clusters``. The page is one
self-contained HTML file shipped in ``sidecar/static``.

Invariants: handlers only read; the page is read from the package once per admin app.
"""

from __future__ import annotations

from importlib import resources
from time import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sidecar.telemetry.metrics import counter_values
from sidecar.telemetry.telemetry import Telemetry

# Outcomes that say nothing against the endpoint (the client left, or the sidecar refused).
_NOT_FAILURES = frozenset(("success", "cancelled", "local_rejection"))


def add_telemetry_routes(app: web.Application, observer: object) -> None:
    page = resources.files("sidecar").joinpath("static", "admin.html").read_bytes()

    async def admin_page(request: web.Request) -> web.Response:
        return web.Response(
            body=page,
            content_type="text/html",
            charset="utf-8",
            headers={"Cache-Control": "no-store"},
        )

    app.router.add_get("/", admin_page)
    if not isinstance(observer, Telemetry):
        return
    telemetry = observer

    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(telemetry.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(stats_view(telemetry))

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/stats", stats)


def stats_view(telemetry: Telemetry) -> dict[str, object]:
    """Totals since start: requests per listener by status class, attempts per endpoint."""
    m = telemetry.metrics
    listeners: dict[str, dict[str, object]] = {}
    for name, n in telemetry.listeners_in_flight().items():
        listeners[name] = {"in_flight": n, "requests": {}}
    for (listener, klass), value in counter_values(m.downstream_requests_metric).items():
        entry = listeners.setdefault(listener, {"in_flight": 0, "requests": {}})
        entry["requests"][klass] = int(value)  # type: ignore[index]
    endpoints: dict[str, dict[str, dict[str, int]]] = {}
    for (cluster, endpoint, outcome), value in counter_values(m.attempts_metric).items():
        entry = endpoints.setdefault(cluster, {}).setdefault(
            endpoint, {"attempts": 0, "failures": 0}
        )
        entry["attempts"] += int(value)
        if outcome not in _NOT_FAILURES:
            entry["failures"] += int(value)
    return {"time": time(), "listeners": listeners, "endpoints": endpoints}
