"""Transport tests run on both event loops the sidecar may use: asyncio's and uvloop's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest
import uvloop

from sidecar.transport.h1_client import H1Transport


def pytest_asyncio_loop_factories(config: Any, item: Any) -> Mapping[str, Callable[[], Any]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture
async def transport() -> AsyncIterator[H1Transport]:
    t = H1Transport(connect_timeout=1.0, idle_timeout=5.0)
    yield t
    await t.close()
