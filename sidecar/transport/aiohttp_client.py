"""The aiohttp-based upstream transport: one pooled ``ClientSession`` per cluster.

Keep-alive connections are pooled per endpoint and dropped after ``idle`` seconds, below
the usual backend keep-alive (so we never send on a socket the backend is closing).
Responses are neither decompressed nor re-encoded: bytes pass through.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from discovery.model import Endpoint
from sidecar.pipeline.errors import ConnectFailure, UpstreamReset


class AiohttpResponse:
    __slots__ = ("_resp", "content_length", "headers", "reason", "status")

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self.status = resp.status
        self.reason = resp.reason or ""
        self.headers: CIMultiDictProxy[str] = resp.headers
        self.content_length = resp.content_length

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._resp.content.iter_any():
                yield chunk
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
            raise UpstreamReset(f"upstream closed the body early: {exc}") from None

    async def read(self) -> bytes:
        try:
            return await self._resp.read()
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
            raise UpstreamReset(f"upstream closed the body early: {exc}") from None

    def release(self) -> None:
        self._resp.release()

    def close(self) -> None:
        self._resp.close()


class AiohttpTransport:
    def __init__(self, *, connect_timeout: float, idle_timeout: float) -> None:
        self._connect_timeout = connect_timeout
        self._idle_timeout = idle_timeout
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=0,  # the cluster's max_requests limits concurrency, not the pool
            keepalive_timeout=self._idle_timeout or None,
            force_close=self._idle_timeout == 0,
            ttl_dns_cache=None,
            use_dns_cache=False,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout or None),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self._session

    async def send(
        self, endpoint: Endpoint, method: str, path: str, headers: CIMultiDict[str], body: Any
    ) -> AiohttpResponse:
        session = self._session or self._open()
        url = URL(f"http://{endpoint.id}{path}", encoded=True)
        try:
            resp = await session.request(
                method,
                url,
                headers=headers,
                data=body,
                allow_redirects=False,
                compress=None,
                chunked=None,
                raise_for_status=False,
            )
        except aiohttp.ClientConnectorError as exc:
            raise ConnectFailure(f"cannot connect to {endpoint.id}: {exc.os_error}") from None
        except aiohttp.ServerTimeoutError as exc:
            # aiohttp raises this for sock_connect; a read timeout is the caller's asyncio timeout
            raise ConnectFailure(f"connect to {endpoint.id} timed out") from exc
        except (
            aiohttp.ServerDisconnectedError,
            aiohttp.ClientOSError,
            aiohttp.ClientPayloadError,
        ) as exc:
            raise UpstreamReset(f"{endpoint.id} reset the connection: {exc}") from None
        except aiohttp.ClientResponseError as exc:
            raise UpstreamReset(f"{endpoint.id} sent an invalid response: {exc.message}") from None
        return AiohttpResponse(resp)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
