"""Admin-listener routes for telemetry: ``/metrics``, ``/stats``, ``/history`` and the live
page at ``/``.

``/metrics`` is the Prometheus text format of the sidecar's private registry. ``/stats``
is the JSON the live page polls for request and error totals (the page turns successive
totals into rates); cluster state it reads from ``/clusters``. ``/history`` is the last
minutes of every cluster and endpoint, sampled (``sidecar.telemetry.history``), with the
events of that window: what the page draws its charts and timeline from. The page is one
self-contained HTML file shipped in ``sidecar/static``.

Invariants: routes only read; the page is read from the package once per admin listener.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from time import time

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sidecar.admin import HTML, AdminReply, AdminRoute, json_reply
from sidecar.listener.request import DownstreamRequest
from sidecar.telemetry.history import NOT_FAILURES, History
from sidecar.telemetry.metrics import counter_values
from sidecar.telemetry.telemetry import Telemetry


def telemetry_routes(observer: object, history: History | None = None) -> dict[str, AdminRoute]:
    """``/`` always; ``/metrics`` and ``/stats`` when ``observer`` is the sidecar's telemetry;
    ``/history`` when there is one."""
    page = AdminReply(
        200,
        HTML,
        resources.files("sidecar").joinpath("static", "admin.html").read_bytes(),
        (("Cache-Control", "no-store"),),
    )

    async def admin_page(request: DownstreamRequest) -> AdminReply:
        return page

    routes: dict[str, AdminRoute] = {"/": admin_page}
    if history is not None:

        async def history_route(request: DownstreamRequest) -> AdminReply:
            return json_reply(history.as_json())

        routes["/history"] = history_route
    if not isinstance(observer, Telemetry):
        return routes
    telemetry = observer

    async def metrics(request: DownstreamRequest) -> AdminReply:
        return AdminReply(200, CONTENT_TYPE_LATEST, generate_latest(telemetry.registry))

    async def stats(request: DownstreamRequest) -> AdminReply:
        return json_reply(stats_view(telemetry))

    return {**routes, "/metrics": metrics, "/stats": stats}


def stats_view(telemetry: Telemetry) -> dict[str, object]:
    """Totals since start: requests per listener by status class, attempts per endpoint;
    and the asyncio tasks alive now."""
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
        if outcome not in NOT_FAILURES:
            entry["failures"] += int(value)
    # The process's own tasks: a number that must stay flat in a long-running sidecar.
    tasks = len(asyncio.all_tasks())
    return {"time": time(), "listeners": listeners, "endpoints": endpoints, "tasks": tasks}
