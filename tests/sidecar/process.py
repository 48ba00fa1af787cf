"""``pilotfish run`` in its own process, as users run it, for tests that watch the process."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    def __init__(self, proc: asyncio.subprocess.Process, admin: int, upstream: int) -> None:
        self.proc = proc
        self.admin = admin
        self.upstream = upstream

    def peak_rss(self) -> int:
        """The process's peak resident memory so far (VmHWM), in bytes."""
        return self._status_kib("VmHWM:") * 1024

    def rss(self) -> int:
        return self._status_kib("VmRSS:") * 1024

    def _status_kib(self, key: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
        raise AssertionError(f"no {key}")


async def wait_ready(
    session: aiohttp.ClientSession, port: int, proc: asyncio.subprocess.Process
) -> None:
    async with asyncio.timeout(15):
        while True:
            if proc.returncode is not None:
                raise AssertionError(f"pilotfish exited with {proc.returncode}")
            try:
                async with session.get(f"http://127.0.0.1:{port}/ready") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)  # polling another process's readiness


@asynccontextmanager
async def running_pilotfish(
    tmp_path: Path, endpoint: str, **upstream: Any
) -> AsyncIterator[Process]:
    """One upstream ``app`` over ``endpoint`` (its keys in ``upstream``), every other
    setting at its default but the access log and tracing (off)."""
    admin, port = free_port(), free_port()
    config = {
        "service": {"name": "proc", "port": 1},
        "listeners": {"admin": {"address": "127.0.0.1", "port": admin}},
        "upstreams": [
            {
                "name": "app",
                "listen": f"127.0.0.1:{port}",
                "discovery": {"static": [endpoint]},
                **upstream,
            }
        ],
        "access_log": {"enabled": False},
        "tracing": {"enabled": False},
        "drain_timeout": "10s",
    }
    path = tmp_path / "pilotfish.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sidecar",
        "run",
        "--config",
        str(path),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, admin, proc)
        yield Process(proc, admin, port)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
