"""``DownstreamRequest``: what the proxy handler and the observer read of one request.

It offers the small part of aiohttp's request interface the pipeline uses (``method``,
``raw_path``, ``headers``, ``version``, ``transport``, ``content``), so the handler and the
telemetry code do not care which server parsed the request. The header fields stay bytes
(``fields``); ``headers``, a decoded mapping of them, is built only when asked for.
"""

from __future__ import annotations

import asyncio
from typing import NamedTuple

from multidict import CIMultiDictProxy, MultiDict, MultiDictProxy
from yarl import URL

from sidecar.listener.body import BodyStream
from sidecar.listener.fields import RequestFields


class HttpVersion(NamedTuple):
    major: int
    minor: int


HTTP11 = HttpVersion(1, 1)
HTTP10 = HttpVersion(1, 0)


class DownstreamRequest:
    __slots__ = (
        "client_ip",
        "content",
        "content_length",
        "fields",
        "has_body",
        "host",
        "keep_alive",
        "method",
        "raw_path",
        "transport",
        "upgrade",
        "version",
    )

    def __init__(
        self,
        method: str,
        raw_path: str,
        fields: RequestFields,
        version: HttpVersion,
        transport: asyncio.Transport | None,
        content: BodyStream,
        content_length: int | None,
        has_body: bool,
        keep_alive: bool,
        client_ip: str = "",
        upgrade: str | None = None,
        host: str | None = None,
    ) -> None:
        self.method = method
        self.raw_path = raw_path
        self.fields = fields
        self.version = version
        self.transport = transport
        self.content = content
        self.content_length = content_length
        self.has_body = has_body
        self.keep_alive = keep_alive
        self.client_ip = client_ip  # the peer's address; "" when unknown
        # An upgrade the client asked for: "websocket", "connect", or "ignored" (any
        # other protocol, served as HTTP/1.1); None when it asked for none.
        self.upgrade = upgrade
        # Where the request is addressed: the absolute-form target's authority, else the
        # Host field; None when the request names none (HTTP/1.0).
        self.host = host

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """Every header field as received, decoded (built on first use)."""
        return self.fields.headers(self.host)

    @property
    def body_exists(self) -> bool:
        return self.has_body

    @property
    def path(self) -> str:
        return self.raw_path.partition("?")[0]

    @property
    def query(self) -> MultiDictProxy[str]:
        _, _, qs = self.raw_path.partition("?")
        if not qs:
            return MultiDictProxy(MultiDict())
        return URL.build(path="/", query_string=qs, encoded=True).query

    async def read(self) -> bytes:
        return await self.content.read()
