"""Fixtures for the resilience integration tests: a ``Lab`` of backends and sidecars.

The lab tears down in the safe order: release anything a backend holds, stop sidecars
(draining briefly), then stop backends, so no test waits on a drain timeout.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from sidecar.app import Sidecar
from tests.resilience_it.support import CLUSTER
from tests.sidecar.harness import Backend, config_yaml, start_sidecar


class Lab:
    def __init__(self) -> None:
        self.backends: list[Backend] = []
        self.sidecars: list[Sidecar] = []
        self.release = asyncio.Event()  # set at teardown: frees every held request

    async def start_backends(self, n: int) -> list[Backend]:
        out = []
        for _ in range(n):
            backend = await Backend(f"b{len(self.backends)}").start()
            self.backends.append(backend)
            out.append(backend)
        return out

    async def start_sidecar(
        self,
        endpoints: list[str],
        seed: int = 7,
        listener_settings: dict[str, Any] | None = None,
        **policies: Any,
    ) -> Sidecar:
        """A sidecar with one upstream ``api`` over ``endpoints``; ``policies`` are its keys."""
        upstream = {"name": CLUSTER, "discovery": {"static": endpoints}, **policies}
        text = config_yaml([upstream], drain_timeout="1s", listener_settings=listener_settings)
        sidecar = await start_sidecar(text, rng=random.Random(seed))
        self.sidecars.append(sidecar)
        return sidecar

    async def close(self) -> None:
        self.release.set()
        for sidecar in self.sidecars:
            await sidecar.stop()
        for backend in self.backends:
            await backend.stop()


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    lab = Lab()
    try:
        yield lab
    finally:
        await lab.close()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        yield session
