"""``RequestHead``: a request as a transport sends it, before its body — bytes, made once.

The proxy builds one per downstream request from the fields it received (bytes in, bytes
out: see ``sidecar.pipeline.headers``); the health checker builds one per check from its
configuration (``RequestHead.of``). Every attempt of a request sends the same head, with
per-attempt fields (the trace context) written behind it.

Invariants: ``fields`` is a header block (``Name: value\\r\\n`` per field) with no framing
field (Content-Length, Transfer-Encoding: the transport frames the body itself) and no
CR, LF or NUL inside a name or value — checked where the bytes were made: by the
listener's parser for what a client sent, by ``of`` for anything else. ``line`` is the
request line, ready to send.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sidecar.pipeline.errors import BadRequest

_FRAMING = frozenset(("content-length", "transfer-encoding"))
_FORBIDDEN = ("\r", "\n", "\0")


class RequestHead:
    __slots__ = ("fields", "has_host", "length", "line", "method", "path", "upgrade")

    def __init__(
        self,
        method: str,
        path: str,
        fields: bytes,
        *,
        has_host: bool = True,
        length: int | None = None,
        upgrade: bool = False,
    ) -> None:
        self.method = method
        self.path = path  # path and query, as sent
        self.line = b"%s %s HTTP/1.1\r\n" % (
            method.encode("ascii"),
            path.encode("utf-8", "surrogateescape"),
        )
        self.fields = fields
        self.has_host = has_host  # else the transport names the endpoint in a Host field
        self.length = length  # a streamed body's declared length; None: sent chunked
        self.upgrade = upgrade  # the fields ask for a protocol switch (a WebSocket)

    @classmethod
    def of(
        cls,
        method: str,
        path: str,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        *,
        length: int | None = None,
    ) -> RequestHead:
        """A head from text fields, checked: CR, LF or NUL in the target, a name or a value
        is refused (``BadRequest``); framing fields are left to the transport."""
        items = list(headers.items() if isinstance(headers, Mapping) else headers)
        if " " in method or " " in path:
            raise BadRequest("the method or the target contains a space")
        for text in (method, path, *(part for item in items for part in item)):
            if any(c in text for c in _FORBIDDEN):
                raise BadRequest("a request header or the target contains CR, LF or NUL")
        kept = [(k, v) for k, v in items if k.lower() not in _FRAMING]
        block = "".join(f"{k}: {v}\r\n" for k, v in kept).encode("utf-8", "surrogateescape")
        upgrade = any(k.lower() == "upgrade" for k, _ in kept)
        has_host = any(k.lower() == "host" for k, _ in kept)
        return cls(method, path, block, has_host=has_host, length=length, upgrade=upgrade)
