from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from sidecar.app import Sidecar
from tests.sidecar.harness import Backend, start_sidecar


@pytest.fixture
async def backends() -> AsyncIterator[Callable[[int], Awaitable[list[Backend]]]]:
    started: list[Backend] = []

    async def make(n: int) -> list[Backend]:
        out = []
        for _ in range(n):
            b = await Backend(f"b{len(started)}").start()
            started.append(b)
            out.append(b)
        return out

    yield make
    for b in started:
        await b.stop()


@pytest.fixture
async def sidecar_factory() -> AsyncIterator[Callable[..., Awaitable[Sidecar]]]:
    running: list[Sidecar] = []

    async def make(text: str, **kwargs: object) -> Sidecar:
        s = await start_sidecar(text, **kwargs)
        running.append(s)
        return s

    yield make
    for s in running:
        if s.state.listeners.get("admin") is not None and not s.state.draining:
            await s.stop()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session
