"""What of a request body goes upstream, and when: buffered whole, or streamed.

A body that may have to be replayed (a retry) must be held whole, so one of at most
``max_replay`` bytes is read completely before anything is sent upstream — with a
Content-Length or chunked alike. That also means the upstream never sees a request whose
body then turns out broken (bad framing, a client that stops sending): the sidecar
refuses it first. A longer body, or any body when retries are off, is streamed: sent
once, as it arrives, never replayed.

Invariants: a buffered body is ``bytes`` (replayable); a streamed one yields exactly the
client's bytes in order, including what was read while deciding; ``when_complete`` on a
streamed body fires once the client has sent all of it.
"""

from __future__ import annotations

from collections.abc import Callable

from sidecar.listener.body import BodyStream
from sidecar.listener.request import DownstreamRequest


class PrefixedBody:
    """A streamed body whose first bytes were already read (while deciding to buffer)."""

    __slots__ = ("_prefix", "_rest")

    def __init__(self, prefix: bytes, rest: BodyStream) -> None:
        self._prefix = prefix
        self._rest = rest

    async def readany(self) -> bytes:
        prefix = self._prefix
        if prefix:
            self._prefix = b""
            return prefix
        return await self._rest.readany()

    def when_complete(self, callback: Callable[[], None]) -> None:
        self._rest.when_complete(callback)


async def request_body(
    request: DownstreamRequest, max_replay: int
) -> tuple[bytes | BodyStream | PrefixedBody | None, bool]:
    """The body to send and whether it can be replayed. A stalled or broken body raises
    the reader's ``ProxyError`` (``RequestTimeout``, ``BadRequest``)."""
    if not request.body_exists:
        return None, True
    body = request.content
    length = request.content_length
    if length is not None:
        if length <= max_replay:
            return await body.read(), True
        return body, False
    if not max_replay:
        return body, False
    parts: list[bytes] = []
    size = 0
    while chunk := await body.readany():
        parts.append(chunk)
        size += len(chunk)
        if size > max_replay:
            return PrefixedBody(b"".join(parts), body), False
    return b"".join(parts), True
