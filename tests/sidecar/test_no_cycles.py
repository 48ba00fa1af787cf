"""A request leaves no reference cycle behind: everything it allocated is freed by reference
counting the moment it ends. Cycles would wait for the cyclic collector, which runs seldom
in a running sidecar (the young-generation threshold is raised at start), so every
request's objects would pile up and cost time and memory.
"""

from __future__ import annotations

import asyncio
import gc

import pytest

from tests.sidecar.harness import config_yaml, start_sidecar
from tests.sidecar.recording import RecordingBackend

REQUESTS = {
    "GET": b"GET /x HTTP/1.1\r\nHost: up\r\n\r\n",
    "buffered POST": b"POST /x HTTP/1.1\r\nHost: up\r\nContent-Length: 1000\r\n\r\n" + b"b" * 1000,
    "streamed POST": b"POST /x HTTP/1.1\r\nHost: up\r\nContent-Length: 100000\r\n\r\n"
    + b"s" * 100_000,
    "chunked POST": b"POST /x HTTP/1.1\r\nHost: up\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"5\r\nhello\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("tracing", [False, True])
@pytest.mark.parametrize("kind", list(REQUESTS))
async def test_requests_leave_no_cyclic_garbage(kind: str, tracing: bool):
    backend = await RecordingBackend().start()
    sidecar = await start_sidecar(
        config_yaml(
            [{"name": "up", "discovery": {"static": [backend.address]}}],
            tracing={"enabled": tracing, "sampler_arg": 1.0},
        )
    )
    try:
        reader, writer = await asyncio.open_connection(*sidecar.address("upstream:up"))

        async def one() -> None:
            writer.write(REQUESTS[kind])
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 "), head
            await reader.readexactly(2)

        for _ in range(20):  # first requests build caches, pools and metric children
            await one()
        gc.collect()
        gc.disable()
        try:
            for _ in range(200):
                await one()
            found = gc.collect()
        finally:
            gc.enable()
        writer.close()
        assert found == 0, f"{found} objects in reference cycles after 200 requests"
    finally:
        await sidecar.stop()
        await backend.stop()
