"""The demo app: calls its upstream, forwards trace headers, turns upstream errors to 502."""

from __future__ import annotations

import importlib.util
import random
import sys
from collections.abc import AsyncIterator
from types import ModuleType

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.compose.stack import COMPOSE_DIR


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, COMPOSE_DIR / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


demo_service = _load("demo_service")
loadgen = _load("loadgen")
SEEN = aiohttp.web.AppKey("seen", list)
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
async def payments() -> AsyncIterator[TestServer]:
    seen: list[str | None] = []
    app = demo_service.build_app({"SERVICE_NAME": "payments", "INSTANCE": "payments-1"})

    async def record(request, handler):  # type: ignore[no-untyped-def]
        seen.append(request.headers.get("traceparent"))
        return await handler(request)

    app.middlewares.append(aiohttp.web.middleware(record))
    app[SEEN] = seen
    async with TestServer(app) as server:
        yield server


async def _get(server: TestServer, path: str, **kw) -> tuple[int, dict]:  # type: ignore[no-untyped-def]
    async with aiohttp.ClientSession() as s, s.get(server.make_url(path), **kw) as r:
        return r.status, await r.json()


async def test_calls_upstream_and_forwards_the_trace(payments: TestServer) -> None:
    orders = demo_service.build_app(
        {"SERVICE_NAME": "orders", "UPSTREAM_URL": str(payments.make_url(""))}
    )
    async with TestServer(orders) as server:
        status, body = await _get(server, "/checkout?x=1", headers={"traceparent": TRACEPARENT})
    assert status == 200
    assert body["service"] == "orders"
    assert body["upstream"] == {
        "service": "payments",
        "instance": "payments-1",
        "path": "/checkout",
    }
    assert payments.app[SEEN] == [TRACEPARENT]


async def test_upstream_failure_becomes_502(payments: TestServer) -> None:
    failing = demo_service.build_app({"FAIL_RATE": "1"}, rng=random.Random(1))
    async with TestServer(failing) as upstream:
        caller = demo_service.build_app({"UPSTREAM_URL": str(upstream.make_url(""))})
        async with TestServer(caller) as server:
            status, body = await _get(server, "/checkout")
    assert status == 502
    assert body["upstream_status"] == 503


async def test_health_never_fails_even_at_full_fail_rate() -> None:
    app = demo_service.build_app({"FAIL_RATE": "1"}, rng=random.Random(1))
    async with (
        TestServer(app) as server,
        aiohttp.ClientSession() as s,
        s.get(server.make_url("/health")) as r,
    ):
        assert r.status == 200


def test_loadgen_summary_counts_statuses_and_retries() -> None:
    from collections import Counter

    line = loadgen.summary(Counter({"200": 8, "502": 2}), 3)
    assert line == "requests=10  200=8  502=2  retried=3"
