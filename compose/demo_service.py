"""A demo service of the compose stack: answers ``/health`` and ``/checkout``-style calls.

Configured by environment only, so one file serves frontend, orders and every payments
replica. With ``UPSTREAM_URL`` set, each request calls that URL (the upstream listener of
the local Pilotfish sidecar) and nests the upstream's answer in its own, forwarding the W3C
trace headers so the sidecars' spans join one trace. ``FAIL_RATE`` (0..1) makes that share
of answers a 503, so retries show up in traces and metrics even without the chaos profile.
It binds 127.0.0.1: other containers reach it only through its sidecar.
"""

from __future__ import annotations

import os
import random
import socket
from collections.abc import AsyncIterator, Mapping

import aiohttp
from aiohttp import web

TRACE_HEADERS = ("traceparent", "tracestate", "baggage")
SESSION = web.AppKey("session", aiohttp.ClientSession)


def build_app(env: Mapping[str, str], rng: random.Random | None = None) -> web.Application:
    name = env.get("SERVICE_NAME", "demo")
    instance = env.get("INSTANCE", socket.gethostname())
    upstream = env.get("UPSTREAM_URL", "").rstrip("/")
    fail_rate = float(env.get("FAIL_RATE", "0"))
    chance = rng or random.Random()
    app = web.Application()

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def handle(request: web.Request) -> web.Response:
        if fail_rate and chance.random() < fail_rate:
            return web.json_response({"service": name, "instance": instance}, status=503)
        body: dict[str, object] = {"service": name, "instance": instance, "path": request.path}
        if upstream:
            headers = {k: request.headers[k] for k in TRACE_HEADERS if k in request.headers}
            session = app[SESSION]
            try:
                async with session.get(f"{upstream}{request.path_qs}", headers=headers) as r:
                    body["upstream_status"] = r.status
                    # Set by the local sidecar: how many tries the upstream call took.
                    body["upstream_attempts"] = int(r.headers.get("x-pilotfish-attempts", "1"))
                    body["upstream"] = await r.json(content_type=None)
                    if r.status >= 500:
                        return web.json_response(body, status=502)
            except (aiohttp.ClientError, ValueError) as exc:
                body["upstream_error"] = type(exc).__name__
                return web.json_response(body, status=502)
        return web.json_response(body)

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        app[SESSION] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session_ctx)
    app.router.add_get("/health", health)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def main() -> None:
    port = int(os.environ.get("APP_PORT", "8080"))
    web.run_app(build_app(os.environ), host="127.0.0.1", port=port, access_log=None)


if __name__ == "__main__":
    main()
