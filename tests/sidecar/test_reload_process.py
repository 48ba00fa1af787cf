"""Reloads of ``pilotfish run`` as users make them: SIGHUP (``systemctl reload``) and
``POST /reload``, many times over, under load, with nothing lost and nothing left behind."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.sidecar.harness import Backend
from tests.sidecar.process import Process, free_port, wait_ready


@pytest.fixture
async def backends() -> AsyncIterator[list[Backend]]:
    started = [await Backend(f"b{i}").start() for i in range(3)]
    yield started
    for b in started:
        await b.stop()


def document(backends: list[Backend], admin: int, egress: int, variant: int) -> dict[str, Any]:
    upstreams: list[dict[str, Any]] = [
        {"name": "alpha", "discovery": {"static": [backends[0].address]}},
        {
            "name": "beta",
            "discovery": {"static": [backends[1].address]},
            "retries": {"attempts": 1 + variant},  # changes at every reload
        },
    ]
    if variant:
        upstreams.append({"name": "gamma", "discovery": {"static": [backends[2].address]}})
    return {
        "service": {"name": "proc", "port": 1},
        "listeners": {
            "admin": {"address": "127.0.0.1", "port": admin},
            "egress": {"address": "127.0.0.1", "port": egress},
        },
        "upstreams": upstreams,
        "access_log": {"enabled": False},
        "tracing": {"enabled": False},
        "drain_timeout": "1s",
    }


@pytest.fixture
async def pilotfish(tmp_path: Path, backends: list[Backend]) -> AsyncIterator[tuple[Process, Path]]:
    admin, egress = free_port(), free_port()
    path = tmp_path / "pilotfish.yaml"
    path.write_text(yaml.safe_dump(document(backends, admin, egress, 0)))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sidecar", "run", "--config", str(path),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, admin, proc)
        yield Process(proc, admin, egress), path
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def admin_json(session: aiohttp.ClientSession, process: Process, path: str) -> Any:
    async with session.get(f"http://127.0.0.1:{process.admin}{path}") as r:
        return await r.json()


async def test_sighup_reloads_the_file_and_the_process_stays(
    pilotfish: tuple[Process, Path], backends: list[Backend]
):
    process, path = pilotfish
    async with aiohttp.ClientSession() as session:
        assert (await admin_json(session, process, "/config"))["version"] == 1
        path.write_text(yaml.safe_dump(document(backends, process.admin, process.upstream, 1)))
        process.proc.send_signal(signal.SIGHUP)
        async with asyncio.timeout(10):
            while (await admin_json(session, process, "/config"))["version"] != 2:
                await asyncio.sleep(0.05)  # polling another process
        egress = f"http://127.0.0.1:{process.upstream}/"
        async with session.get(egress, headers={"Host": "gamma"}) as r:
            assert r.status == 200 and await r.text() == "b2 GET / 0"
    assert process.proc.returncode is None


async def test_200_reloads_under_load_lose_nothing_and_leave_nothing_behind(
    pilotfish: tuple[Process, Path], backends: list[Backend]
):
    process, path = pilotfish
    pid = process.proc.pid
    egress = f"http://127.0.0.1:{process.upstream}/"
    failed: list[str] = []
    served = 0
    stop = asyncio.Event()

    async def load(host: str) -> None:
        nonlocal served
        async with aiohttp.ClientSession(headers={"Host": host}) as client:
            while not stop.is_set():
                try:
                    async with client.get(egress) as r:
                        await r.read()
                        if r.status != 200:
                            failed.append(f"{host}: {r.status}")
                        served += 1
                except aiohttp.ClientError as exc:
                    failed.append(f"{host}: {exc!r}")
                await asyncio.sleep(0.005)  # about 150 requests a second per upstream

    async with aiohttp.ClientSession() as session:

        async def reloads(count: int) -> None:
            for i in range(count):
                variant = (i + 1) % 2
                path.write_text(
                    yaml.safe_dump(document(backends, process.admin, process.upstream, variant))
                )
                async with session.post(f"http://127.0.0.1:{process.admin}/reload") as r:
                    answer = await r.json()
                    assert r.status == 200 and answer["applied"], answer

        loads = [asyncio.create_task(load(host)) for host in ("alpha", "beta")]
        await reloads(10)  # warm: caches, pools, metric children, the allocator
        await asyncio.sleep(1.5)  # let the retired clusters finish their drain
        base = (
            open_fds(pid),
            process.rss(),
            (await admin_json(session, process, "/stats"))["tasks"],
        )
        await reloads(200)
        await asyncio.sleep(1.5)
        after = (
            open_fds(pid),
            process.rss(),
            (await admin_json(session, process, "/stats"))["tasks"],
        )
        stop.set()
        await asyncio.gather(*loads)
        version = (await admin_json(session, process, "/config"))["version"]
    assert failed == []
    assert served > 500
    assert version == 211
    fds, rss, tasks = base
    assert after[0] <= fds * 1.05 + 1, (base, after)
    assert after[1] <= rss * 1.05, (base, after)
    assert after[2] <= tasks * 1.05 + 1, (base, after)
