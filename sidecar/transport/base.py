"""The one interface between the pipeline and the network.

A ``Transport`` sends one request to one endpoint and returns an ``UpstreamResponse`` as
soon as the status line and headers arrived; the body is read by whoever writes the
downstream response. Failures are raised as the pipeline's ``ProxyError`` subclasses
(``ConnectFailure``, ``UpstreamReset``); a per-try timeout is applied around ``send`` by the
caller. Replacing the transport (a faster one on ``asyncio.Protocol``) touches nothing else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from multidict import CIMultiDict, CIMultiDictProxy

from discovery.model import Endpoint


class UpstreamResponse(Protocol):
    status: int
    reason: str
    fields: list[tuple[bytes, bytes]]  # the header fields as received
    content_length: int | None  # from the framing: None when chunked or close-delimited

    @property
    def headers(self) -> CIMultiDictProxy[str]: ...

    def iter_chunks(self) -> AsyncIterator[bytes]: ...

    async def read(self) -> bytes: ...

    def release(self) -> None:
        """Return the connection to the pool (the body was read to the end)."""

    def close(self) -> None:
        """Drop the connection (the body was not read to the end)."""


class Transport(Protocol):
    async def send(
        self, endpoint: Endpoint, method: str, path: str, headers: CIMultiDict[str], body: Any
    ) -> UpstreamResponse: ...

    async def close(self) -> None: ...
