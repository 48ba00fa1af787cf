"""Single health probes against servers that misbehave in every way a socket can."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from discovery.model import Endpoint
from tests.resilience_it.support import closed_port

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
PROBE_TIMEOUT = 0.3


def http_answer(status_line: str) -> Serve:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(f"HTTP/1.1 {status_line}\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    return serve


async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"this is not http\r\n\r\n")
    await writer.drain()
    writer.close()


async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # until the prober gives up and closes


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[Serve], Awaitable[int]]]:
    servers: list[asyncio.Server] = []
    clients: list[asyncio.StreamWriter] = []

    async def start(serve: Serve) -> int:
        async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            clients.append(writer)
            await serve(reader, writer)

        server = await asyncio.start_server(tracked, "127.0.0.1", 0)
        servers.append(server)
        return server.sockets[0].getsockname()[1]

    yield start
    for server in servers:
        server.close()
    for writer in clients:
        writer.transport.abort()
    for server in servers:
        await server.wait_closed()


HTTP_CASES = [
    ("200 OK", http_answer("200 OK"), True),
    ("204 No Content", http_answer("204 No Content"), True),
    ("302 Found is in the default 200-399", http_answer("302 Found"), True),
    ("404 Not Found", http_answer("404 Not Found"), False),
    ("503 Service Unavailable", http_answer("503 Service Unavailable"), False),
    ("not HTTP at all", garbage, False),
    ("closes without a word", close_at_once, False),
    ("never answers", never_answer, False),
]


@pytest.mark.parametrize(("case", "serve", "passes"), HTTP_CASES, ids=[c[0] for c in HTTP_CASES])
async def test_http_probe_verdicts(lab, raw_server, case, serve, passes):
    port = await raw_server(serve)
    sc = await lab.start_sidecar(
        [f"127.0.0.1:{port}"],
        health_check={"http": {"path": "/health"}, "interval": "1h", "timeout": PROBE_TIMEOUT},
    )
    checker = sc.health_checkers["api"]
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await checker.probe(Endpoint("127.0.0.1", port)) is passes, case
    assert loop.time() - started < PROBE_TIMEOUT + 0.2


async def test_http_probe_of_a_closed_port_fails(lab):
    port = closed_port()
    sc = await lab.start_sidecar([f"127.0.0.1:{port}"], health_check={"http": {}, "interval": "1h"})
    assert await sc.health_checkers["api"].probe(Endpoint("127.0.0.1", port)) is False


async def test_http_probe_honours_expected_statuses_and_host(lab, raw_server):
    seen: list[bytes] = []

    async def teapot(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 418 I'm a teapot\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    port = await raw_server(teapot)
    sc = await lab.start_sidecar(
        [f"127.0.0.1:{port}"],
        health_check={
            "http": {
                "path": "/ready",
                "expected_statuses": ["200-299", 418],
                "host": "svc.internal",
            },
            "interval": "1h",
        },
    )
    assert await sc.health_checkers["api"].probe(Endpoint("127.0.0.1", port)) is True
    request = seen[-1].decode().lower()
    assert request.startswith("get /ready http/1.1")
    assert "host: svc.internal" in request
    assert "user-agent: pilotfish-health-check" in request


@pytest.mark.parametrize(("listening", "passes"), [(True, True), (False, False)])
async def test_tcp_probe_passes_when_a_connection_opens(lab, raw_server, listening, passes):
    port = await raw_server(never_answer) if listening else closed_port()
    sc = await lab.start_sidecar([f"127.0.0.1:{port}"], health_check={"tcp": {}, "interval": "1h"})
    assert await sc.health_checkers["api"].probe(Endpoint("127.0.0.1", port)) is passes
