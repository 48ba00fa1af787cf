"""Hostile clients against ``pilotfish run`` with its default settings: an endless header line,
ten thousand fields, a megabyte request line, a million one-byte chunks, slowloris heads.

Each is refused (or served) quickly, in flat memory, without stalling anyone else: a probe
client measures the event loop's responsiveness through the admin listener meanwhile.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from sidecar.listener.h1_server import MAX_FIELD, MAX_HEADERS, MAX_URL
from tests.sidecar.harness import Backend
from tests.sidecar.process import Process, running_pilotfish

MiB = 1024 * 1024


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    b = await Backend("app").start()
    yield b
    await b.stop()


@pytest.fixture
async def pilotfish(tmp_path: Path, backend: Backend) -> AsyncIterator[Process]:
    async with running_pilotfish(tmp_path, backend.address) as process:
        yield process


class Probe:
    """Asks the sidecar's admin listener for /live every few ms; keeps each answer's time."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/live"
        self.latencies: list[float] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Probe:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0.1)  # let it connect and settle before the scenario starts
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession() as session:
            async with session.get(self.url) as r:  # connected before anything is measured
                await r.read()
            while not self._stop.is_set():
                began = loop.time()
                async with session.get(self.url) as r:
                    assert r.status == 200
                    await r.read()
                self.latencies.append(loop.time() - began)
                await asyncio.sleep(0.002)  # a request every few milliseconds

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def attack(
    port: int, head: bytes, piece: bytes, limit: int, total: int
) -> tuple[bytes, float | None]:
    """Sends ``head``, then ``piece`` again and again (up to ``total`` bytes) until the
    sidecar answers; returns the answer and the seconds from crossing ``limit`` to it."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answered_at: list[float] = []

    async def answer() -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        answered_at.append(loop.time())
        length = re.search(rb"Content-Length: (\d+)", head)
        return head + await reader.readexactly(int(length.group(1)) if length else 0)

    answering = asyncio.create_task(answer())
    sent = 0
    crossed: float | None = None
    try:
        writer.write(head)
        while sent < total and not answering.done():
            writer.write(piece)
            sent += len(piece)
            if crossed is None and sent > limit:
                crossed = loop.time()
            await writer.drain()
    except ConnectionError:
        pass  # refused and closed while we were still sending
    got = await asyncio.wait_for(answering, 5)
    took = answered_at[0] - crossed if crossed is not None else None
    writer.close()
    return got, took


async def test_endless_heads_are_refused_at_once_in_flat_memory(pilotfish: Process):
    port = pilotfish.upstream
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/warm") as r,
    ):
        assert r.status == 200
    base = pilotfish.peak_rss()
    line = b"a" * (64 * 1024)
    fields = b"".join(b"X-F%d: v\r\n" % i for i in range(1000))
    attacks: list[tuple[str, Callable[[], object], int]] = [
        (
            "a 256 MiB header line",
            lambda: attack(
                port, b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: ", line, MAX_FIELD, 256 * MiB
            ),
            431,
        ),
        (
            "10,000 fields",
            lambda: attack(port, b"GET / HTTP/1.1\r\nHost: a\r\n", fields, 0, 10 * len(fields)),
            431,
        ),
        (
            "a 1 MiB request line",
            lambda: attack(port, b"GET /", line, MAX_URL, MiB),
            414,
        ),
    ]
    rounds = 0
    async with Probe(pilotfish.admin) as probe, asyncio.timeout(60):
        # Attacks go on until the probe has enough answers for a 99th percentile.
        while len(probe.latencies) < 200 or rounds < 3:
            rounds += 1
            for name, run, status in attacks:
                answer, took = await run()  # type: ignore[misc]
                assert re.match(rb"HTTP/1\.1 %d " % status, answer), (name, answer[:80])
                assert took is None or took < 0.1, (name, took)
    assert MAX_HEADERS < 10_000
    grown = pilotfish.peak_rss() - base
    assert grown < 5 * MiB, f"peak RSS grew by {grown / MiB:.1f} MiB"
    assert probe.quantile(0.99) < 0.02, sorted(probe.latencies)[-5:]


async def test_a_million_one_byte_chunks_do_not_stall_the_loop(
    pilotfish: Process, backend: Backend
):
    async def count(request: web.Request) -> web.Response:
        return web.Response(text=str(len(await request.read())))

    backend.behaviour = count
    body = b"1\r\na\r\n" * 1_000_000 + b"0\r\n\r\n"
    async with Probe(pilotfish.admin) as probe:
        reader, writer = await asyncio.open_connection("127.0.0.1", pilotfish.upstream)
        writer.write(
            b"POST /tiny HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n" + body
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 60)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert answer.endswith(b"\r\n\r\n1000000")
    assert len(probe.latencies) > 20
    assert max(probe.latencies) < 0.05, sorted(probe.latencies)[-5:]


async def test_slowloris_heads_are_cut_at_60_s_on_fresh_and_kept_alive_connections(
    pilotfish: Process,
):
    loop = asyncio.get_running_loop()
    head = b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"s" * 200

    async def slowloris(kept_alive: bool) -> tuple[bytes, float]:
        reader, writer = await asyncio.open_connection("127.0.0.1", pilotfish.upstream)
        if kept_alive:
            writer.write(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n")
            await reader.readuntil(b"GET /first 0")
        began = loop.time()
        answering = asyncio.create_task(reader.read())
        for byte in head:
            if answering.done():
                break
            try:
                writer.write(bytes([byte]))
            except ConnectionError:
                break
            await asyncio.wait([answering], timeout=1.0)  # one byte a second
        answer = await asyncio.wait_for(answering, 5)
        took = loop.time() - began
        writer.close()
        return answer, took

    results = await asyncio.gather(slowloris(False), slowloris(True))
    for answer, took in results:
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
        assert 60.0 <= took < 61.0, took
