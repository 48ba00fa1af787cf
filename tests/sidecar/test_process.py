"""The sidecar as users run it: ``pilotfish run`` in its own process."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web

from tests.sidecar.harness import Backend
from tests.sidecar.process import Process, free_port, running_pilotfish

MiB = 1024 * 1024


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    b = await Backend("app").start()
    yield b
    await b.stop()


@pytest.fixture
async def pilotfish(tmp_path: Path, backend: Backend) -> AsyncIterator[Process]:
    async with running_pilotfish(
        tmp_path, backend.address, timeouts={"total": "60s"}, retries={"per_try_timeout": 0}
    ) as process:
        yield process


async def test_100_mib_each_way_streams_in_bounded_memory(pilotfish: Process, backend: Backend):
    async def sink(request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            total = 0
            async for chunk in request.content.iter_any():
                total += len(chunk)
            return web.Response(text=str(total))
        resp = web.StreamResponse(headers={"Content-Length": str(100 * MiB)})
        await resp.prepare(request)
        block = b"z" * MiB
        for _ in range(100):
            await resp.write(block)
        await resp.write_eof()
        return resp

    backend.behaviour = sink

    async def upload() -> AsyncIterator[bytes]:
        block = b"u" * MiB
        for _ in range(100):
            yield block

    base = f"http://127.0.0.1:{pilotfish.upstream}"
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{base}/up", data=upload(), headers={"Content-Length": str(100 * MiB)}
        ) as r:
            assert r.status == 200
            assert await r.text() == str(100 * MiB)
        received = 0
        async with session.get(f"{base}/down") as r:
            assert r.status == 200
            async for chunk in r.content.iter_any():
                received += len(chunk)
        assert received == 100 * MiB
    # Buffering either body would push the peak well past 100 MiB.
    assert pilotfish.peak_rss() < 80 * MiB, pilotfish.peak_rss() / MiB


async def test_sigterm_drains_the_request_in_flight_then_exits_0(
    pilotfish: Process, backend: Backend
):
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="finished")

    backend.behaviour = slow
    base = f"http://127.0.0.1:{pilotfish.upstream}"
    async with aiohttp.ClientSession() as session:
        in_flight = asyncio.create_task(session.get(f"{base}/slow"))
        await asyncio.wait_for(backend.entered.wait(), 5)
        os.kill(pilotfish.proc.pid, signal.SIGTERM)
        async with asyncio.timeout(5):
            while True:  # readiness turns 503 while the drain runs
                async with session.get(f"http://127.0.0.1:{pilotfish.admin}/ready") as r:
                    if r.status == 503:
                        assert "draining" in await r.text()
                        break
                await asyncio.sleep(0.02)
        with pytest.raises(aiohttp.ClientConnectionError):
            async with aiohttp.ClientSession() as fresh:
                await fresh.get(f"{base}/new")  # no longer accepting
        release.set()
        resp = await asyncio.wait_for(in_flight, 5)
        assert resp.status == 200
        assert await resp.text() == "finished"
        resp.release()
    assert await asyncio.wait_for(pilotfish.proc.wait(), 10) == 0


@pytest.mark.parametrize("chaos", [False, True])
async def test_demo_runs_its_duration_and_stops_cleanly(chaos: bool):
    args = [sys.executable, "-m", "sidecar", "demo", "--duration", "3", "--rate", "40"]
    proc = await asyncio.create_subprocess_exec(
        *args,
        *(["--chaos"] if chaos else []),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    last = text.strip().splitlines()[-1]
    sent = int(last.split()[1])
    assert 100 <= sent <= 130, last  # 40/s for 3 s
    assert ", 0 failed," in last, text[-800:]
    for name in ("alpha", "bravo", "charlie"):
        assert name in text
    if chaos:
        assert "[chaos: bravo killed]" in text


async def test_a_listener_that_cannot_bind_ends_the_process_with_a_clear_error(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = {
            "service": {"name": "proc", "port": 1},
            "listeners": {"admin": {"address": "127.0.0.1", "port": free_port()}},
            "upstreams": [
                {"name": "app", "listen": f"127.0.0.1:{port}", "discovery": {"static": ["a:1"]}}
            ],
            "tracing": {"enabled": False},
        }
        path = tmp_path / "pilotfish.yaml"
        path.write_text(yaml.safe_dump(config))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sidecar", "run", "--config", str(path),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    text = err.decode()
    assert f"listener upstream:app: cannot listen on 127.0.0.1:{port}:" in text
    assert "address already in use" in text
    assert "Traceback" not in text
