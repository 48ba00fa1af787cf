"""Real servers on 127.0.0.1 for transport tests: an aiohttp app and a scriptable raw one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiohttp import web

from discovery.model import Endpoint

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]
AppHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Peers:
    """Client ports an aiohttp app saw: one per upstream connection the transport opened."""

    def __init__(self) -> None:
        self.ports: set[int] = set()

    def note(self, request: web.Request) -> None:
        assert request.transport is not None
        self.ports.add(request.transport.get_extra_info("peername")[1])


@asynccontextmanager
async def aiohttp_app(handler: AppHandler) -> AsyncIterator[Endpoint]:
    app = web.Application(client_max_size=1024**3)
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield Endpoint("127.0.0.1", runner.addresses[0][1])
    finally:
        await runner.cleanup()


class RawServer:
    """Each accepted connection runs ``script(reader, writer, index)``, index counting from 0."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.closed_by_peer = asyncio.Queue[int]()  # indexes whose client went away
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Endpoint:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return Endpoint("127.0.0.1", port)

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = self.connections
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.script(reader, writer, index)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One request off the wire: (head, body), the body de-chunked; (b"", b"") at EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return b"", b""
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            parts.append(await reader.readexactly(size + 2))
            if size == 0:
                return head, b"".join(p[:-2] for p in parts)
    for line in lower.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return head, await reader.readexactly(int(line.split(b":", 1)[1]))
    return head, b""


async def wait_for_eof(reader: asyncio.StreamReader) -> None:
    """Returns once the client closed (or reset) the connection."""
    try:
        while await reader.read(65536):
            pass
    except ConnectionError:
        pass


def response(status: str, body: bytes = b"", *headers: str) -> bytes:
    lines = "".join(f"{h}\r\n" for h in headers)
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{lines}\r\n".encode() + body
