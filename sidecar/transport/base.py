"""The one interface between the pipeline and the network.

A ``Transport`` sends one request to one endpoint and returns an ``UpstreamResponse`` as
soon as the status line and headers arrived; the body is read by whoever writes the
downstream response, and the response reports to the ``ResponseEnd`` it is given how its
body ended: whole, broken (the endpoint's failure) or abandoned by its reader. A ``101``
answer to an upgrade request (``RequestHead.upgrade``) becomes a tunnel.
Failures are raised as the pipeline's ``ProxyError`` subclasses
(``ConnectFailure``, ``UpstreamReset``); a per-try timeout is applied around ``send`` by the
caller. Replacing the transport (a faster one on ``asyncio.Protocol``) touches nothing else.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Protocol

from multidict import CIMultiDictProxy

from discovery.model import Endpoint
from sidecar.transport.request_head import RequestHead

if TYPE_CHECKING:
    from sidecar.pipeline.errors import ProxyError
    from sidecar.tunnel import Tunnel


class ResponseEnd(Protocol):
    """Told once how a response's body ended."""

    def ended(self) -> None: ...

    def failed(self, error: ProxyError) -> None: ...

    def abandoned(self) -> None: ...


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

    def watch(self, end: ResponseEnd) -> None:
        """Report how the body ends to ``end`` (once)."""

    def tunnel(self, start: Callable[[asyncio.Transport, bytes], Tunnel]) -> Tunnel:
        """After a 101: hand the connection and the bytes that followed the head to
        ``start``, which makes the tunnel; the connection leaves the pool for good."""


class Transport(Protocol):
    async def send(
        self, endpoint: Endpoint, head: RequestHead, body: Any, extra: bytes = b""
    ) -> UpstreamResponse:
        """``head`` and ``extra`` (per-attempt fields, as a header block) then ``body``."""

    async def close(self) -> None: ...
