"""Shared pieces of the resilience integration tests: scripted backends, a hard kill, waiting.

Backends are ``tests.sidecar.harness.Backend`` (real aiohttp servers on 127.0.0.1); what
they answer is set through ``behaviour``. Waiting is always on a condition with a bound,
never a bare sleep: ``wait_until`` polls a predicate (used for states that change with
time, such as an ejection running out), ``asyncio.Event`` is used wherever something can
signal.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from sidecar.app import Sidecar
from sidecar.cluster import Cluster
from tests.sidecar.harness import Backend, Behaviour, url

CLUSTER = "api"
HEALTH_PATH = "/health"


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound once, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def answer(backend: Backend, status: int = 200) -> Behaviour:
    """Read the body and answer ``status``, naming the backend like the default behaviour."""

    async def behaviour(request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(
            status=status,
            text=f"{backend.name} {request.method} {len(body)}",
            headers={"x-backend": backend.name},
        )

    return behaviour


def hang(release: asyncio.Event) -> Behaviour:
    """Never answer until ``release`` is set (then answer 200)."""

    async def behaviour(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="late")

    return behaviour


class Gate:
    """A behaviour that holds each request until ``open()``, then answers 200."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.entered = asyncio.Event()
        self._opened = asyncio.Event()

    def open(self) -> None:
        self._opened.set()

    async def __call__(self, request: web.Request) -> web.Response:
        self.entered.set()
        await self._opened.wait()
        return web.Response(
            text=f"{self.backend.name} gated", headers={"x-backend": self.backend.name}
        )


class HealthScript:
    """Answers ``/health`` with ``status`` (switchable) and everything else with 200."""

    def __init__(self, backend: Backend, status: int = 200) -> None:
        self.backend = backend
        self.status = status
        self.answered: Counter[int] = Counter()  # probe answers by status
        self._traffic = answer(backend)

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        if request.path != HEALTH_PATH:
            return await self._traffic(request)
        self.answered[self.status] += 1
        return web.Response(status=self.status, text="health")

    @property
    def traffic(self) -> int:
        """Requests other than probes that reached the backend."""
        return sum(1 for r in self.backend.requests if r["path"] != HEALTH_PATH)


async def kill(backend: Backend) -> None:
    """Stop a backend the hard way: listening socket closed, open connections aborted.

    Nothing is drained: requests in flight lose their connection mid-exchange, new ones are
    refused, as when a process dies.
    """
    runner = backend.runner
    assert runner is not None and runner.server is not None
    for site in list(runner.sites):
        await site.stop()
    for handler in runner.server.connections:
        if handler.transport is not None:
            handler.transport.abort()


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait for ``predicate()`` to hold, polling every few milliseconds; fail after ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout:g}s waiting for {what}") from None


def endpoint_view(clusters: dict[str, Any], cluster: str, endpoint_id: str) -> dict[str, Any]:
    """One endpoint's entry in the admin ``/clusters`` document."""
    (found,) = [c for c in clusters["clusters"] if c["name"] == cluster]
    (view,) = [e for e in found["endpoints"] if e["id"] == endpoint_id]
    return view


def served_by(response: aiohttp.ClientResponse) -> str:
    """Name of the backend that produced ``response``."""
    return response.headers["x-backend"]


def cluster_view(clusters: dict[str, Any], cluster: str) -> dict[str, Any]:
    (found,) = [c for c in clusters["clusters"] if c["name"] == cluster]
    return found


def api(sidecar: Sidecar, path: str = "/") -> str:
    return url(sidecar, f"upstream:{CLUSTER}", path)


def cluster_of(sidecar: Sidecar) -> Cluster:
    return sidecar.clusters[CLUSTER]


async def admin_clusters(client: aiohttp.ClientSession, sidecar: Sidecar) -> dict[str, Any]:
    async with client.get(url(sidecar, "admin", "/clusters")) as r:
        assert r.status == 200
        return await r.json()
