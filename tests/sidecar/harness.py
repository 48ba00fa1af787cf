"""Real parts for sidecar tests: aiohttp backends and a Sidecar on ephemeral ports."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import yaml
from aiohttp import web

from sidecar.app import Sidecar
from sidecar.config import load_text

Behaviour = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Backend:
    """A real HTTP server on 127.0.0.1 whose behaviour a test can script."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.hits = 0
        self.requests: list[dict[str, Any]] = []
        self.behaviour: Behaviour | None = None
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.in_flight = 0
        self.entered = asyncio.Event()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        self.in_flight += 1
        self.entered.set()
        try:
            self.requests.append(
                {
                    "method": request.method,
                    "path": request.path_qs,
                    "headers": dict(request.headers),
                    "fields": list(request.headers.items()),  # repeats and order kept
                }
            )
            if self.behaviour is not None:
                return await self.behaviour(request)
            body = await request.read()
            return web.Response(
                text=f"{self.name} {request.method} {request.path_qs} {len(body)}",
                headers={"x-backend": self.name},
            )
        finally:
            self.in_flight -= 1

    async def start(self, port: int = 0) -> Backend:
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port, reuse_address=True)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def config_yaml(
    upstreams: list[dict[str, Any]],
    *,
    service_port: int = 1,
    inbound: bool = False,
    egress: bool = False,
    listener_settings: dict[str, Any] | None = None,
    **extra: Any,
) -> str:
    listeners: dict[str, Any] = {"admin": {"address": "127.0.0.1", "port": 0}}
    listeners.update(listener_settings or {})
    if inbound:
        listeners["inbound"] = {"address": "127.0.0.1", "port": 0}
    if egress:
        listeners["egress"] = {"address": "127.0.0.1", "port": 0}
    for up in upstreams:
        up.setdefault("listen", "127.0.0.1:0")
    doc = {
        "service": {"name": "test", "port": service_port},
        "listeners": listeners,
        "upstreams": upstreams,
        "access_log": {"enabled": False},
        "tracing": {"enabled": False},
        **extra,
    }
    return yaml.safe_dump(doc)


async def start_sidecar(text: str, **kwargs: Any) -> Sidecar:
    sidecar = Sidecar(load_text(text, environ={}), **kwargs)
    await sidecar.start()
    return sidecar


def url(sidecar: Sidecar, listener: str, path: str = "/") -> str:
    host, port = sidecar.address(listener)
    return f"http://{host}:{port}{path}"


def shares(texts: list[str]) -> Counter[str]:
    return Counter(t.split()[0] for t in texts)
