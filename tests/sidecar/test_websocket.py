"""WebSocket through the sidecar: a real client library against a real WebSocket server, a
raw tunnel once the upstream answers 101; other upgrades are served as HTTP/1.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from sidecar.app import Sidecar
from tests.sidecar.harness import config_yaml, start_sidecar, url
from tests.sidecar.process import running_pilotfish

MiB = 1024 * 1024


class EchoServer:
    """Echoes text (prefixed) and binary frames; counts upgrades and plain requests."""

    def __init__(self) -> None:
        self.upgrades = 0
        self.plain: list[dict[str, str]] = []
        self.closed = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def ws(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            self.plain.append(dict(request.headers))
            return web.Response(text=f"plain {len(await request.read())}")
        self.upgrades += 1
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str("echo:" + msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        self.closed.set()
        return ws

    async def start(self) -> EchoServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.ws)
        self.runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self


@pytest.fixture
async def echo() -> AsyncIterator[EchoServer]:
    server = await EchoServer().start()
    yield server
    assert server.runner is not None
    await server.runner.cleanup()


async def sidecar_for(
    echo: EchoServer, tmp_path: Path, listener: dict[str, object] | None = None, **extra: object
) -> Sidecar:
    return await start_sidecar(
        config_yaml(
            [{"name": "ws", "discovery": {"static": [f"127.0.0.1:{echo.port}"]}}],
            listener_settings=listener,
            access_log={"enabled": True, "path": str(tmp_path / "access.log")},
            **extra,
        )
    )


async def test_frames_pass_both_ways_and_the_close_handshake_completes(echo, tmp_path):
    sc = await sidecar_for(echo, tmp_path)
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(url(sc, "upstream:ws", "/chat"), max_msg_size=0) as ws,
        ):
            await ws.send_str("hello")
            assert (await ws.receive_str()) == "echo:hello"
            await ws.send_bytes(b"\x00\x01\xff")
            assert (await ws.receive_bytes()) == b"\x00\x01\xff"
            big = bytes(range(256)) * (10 * MiB // 256)
            await ws.send_bytes(big)
            assert (await ws.receive_bytes(timeout=30)) == big
            await ws.close()
            assert ws.close_code == 1000
        await asyncio.wait_for(echo.closed.wait(), 5)
        async with asyncio.timeout(5):  # the tunnel's request ends once both sides are gone
            while sc.observer.listeners_in_flight()["upstream:ws"]:
                await asyncio.sleep(0.005)
        await sc.observer.flush()
        (line,) = [json.loads(x) for x in (tmp_path / "access.log").read_text().splitlines()]
        assert line["status"] == 101 and line["path"] == "/chat"
        assert line["bytes_in"] > 10 * MiB and line["bytes_out"] > 10 * MiB
        tunnel_bytes = sc.observer.metrics.tunnel_bytes
        assert tunnel_bytes[("upstream:ws", "in")].value == line["bytes_in"]
        assert tunnel_bytes[("upstream:ws", "out")].value == line["bytes_out"]
    finally:
        await sc.stop()


async def test_an_idle_tunnel_lives_until_its_idle_timeout(echo, tmp_path):
    sc = await sidecar_for(echo, tmp_path, {"timeouts": {"tunnel_idle": "1s"}})
    loop = asyncio.get_running_loop()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(url(sc, "upstream:ws", "/idle"), autoping=False) as ws,
        ):
            await ws.send_str("x")
            assert (await ws.receive_str()) == "echo:x"
            quiet = loop.time()
            msg = await ws.receive(timeout=5)  # nothing moves: the tunnel is closed
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert 1.0 <= loop.time() - quiet < 2.5
    finally:
        await sc.stop()


async def test_a_tunnel_survives_30_s_idle_under_the_default_idle_timeout(echo, tmp_path):
    sc = await sidecar_for(echo, tmp_path)
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(url(sc, "upstream:ws", "/"), autoping=False) as ws,
        ):
            await ws.send_str("before")
            assert (await ws.receive_str()) == "echo:before"
            with pytest.raises(TimeoutError):
                await ws.receive(timeout=30)  # 30 s without a byte either way
            await ws.send_str("after")
            assert (await ws.receive_str()) == "echo:after"
    finally:
        await sc.stop()


async def test_a_stopping_sidecar_closes_its_tunnels_after_the_drain(echo, tmp_path):
    sc = await sidecar_for(echo, tmp_path, drain_timeout="500ms")
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url(sc, "upstream:ws", "/"), autoping=False) as ws,
    ):
        await ws.send_str("x")
        assert (await ws.receive_str()) == "echo:x"
        stopping = asyncio.create_task(sc.stop())
        msg = await ws.receive(timeout=15)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        await asyncio.wait_for(stopping, 15)
    await asyncio.wait_for(echo.closed.wait(), 5)


async def test_an_h2c_upgrade_is_ignored_and_served_as_http11(echo, tmp_path):
    sc = await sidecar_for(echo, tmp_path)
    try:
        async with aiohttp.ClientSession() as session:
            headers = {
                "Connection": "Upgrade, HTTP2-Settings",
                "Upgrade": "h2c",
                "HTTP2-Settings": "AAMAAABkAARAAAAAAAIAAAAA",
            }
            async with session.post(
                url(sc, "upstream:ws", "/h2c"), data=b"hello", headers=headers
            ) as r:
                assert r.status == 200 and await r.text() == "plain 5"
        assert echo.upgrades == 0
        (seen,) = echo.plain
        assert "Upgrade" not in seen and "HTTP2-Settings" not in seen
    finally:
        await sc.stop()


async def test_ten_mib_each_way_pass_through_pilotfish_run_in_bounded_memory(echo, tmp_path):
    async with running_pilotfish(tmp_path, f"127.0.0.1:{echo.port}") as process:
        target = f"http://127.0.0.1:{process.upstream}/big"
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(target, max_msg_size=0) as ws,
        ):
            await ws.send_str("warm")
            assert (await ws.receive_str()) == "echo:warm"
            base = process.peak_rss()
            block = bytes(range(256)) * (MiB // 256)
            for _ in range(10):  # 10 MiB each way, a MiB per frame
                await ws.send_bytes(block)
                assert (await ws.receive_bytes(timeout=30)) == block
            grown = process.peak_rss() - base
            await ws.close()
    # Held whole, the frames alone would need 10 MiB; relayed under flow control, a few.
    assert grown < 4 * MiB, f"peak RSS grew by {grown / MiB:.1f} MiB"
