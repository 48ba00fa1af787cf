"""A raw HTTP/1.1 backend that records every byte it receives (for "nothing reached it")."""

from __future__ import annotations

import asyncio

import httptools


class _Conn(asyncio.Protocol):
    def __init__(self, backend: RecordingBackend) -> None:
        self.backend = backend
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.backend.connections += 1

    def data_received(self, data: bytes) -> None:
        self.backend.received += data
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_message_complete(self) -> None:
        self.backend.requests += 1
        assert self.transport is not None
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


class RecordingBackend:
    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0
        self.received = b""
        self.port = 0
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> RecordingBackend:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Conn(self), "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"
