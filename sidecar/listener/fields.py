"""``RequestFields``: the header fields of one request as received, kept as bytes.

The listener adds each field as llhttp reports it. The few a proxy hop must look at are
noted on the way (``NOTED``: Host, the framing fields, Connection, Upgrade, Expect, the
forwarding fields, the request id and the trace context); every other field is copied
into ``passing``, the byte pieces of the header block sent on, so a request that needs
nothing special is forwarded without decoding or re-encoding a single field.

Invariants:
- ``passing`` holds every end-to-end field in arrival order, except Host, X-Forwarded-For
  and traceparent (the forwarding hop writes those anew) and the hop-by-hop set and
  framing fields (RFC 9110 §7.6.1), which never pass; a field the ``Connection`` field
  names is still in it, and ``connection_names`` says which ones a hop must take out;
- ``noted`` keeps the first value of each noted field, ``repeated`` names the noted fields
  that came more than once (the head rules refuse some of those);
- ``headers`` (a case-insensitive multidict of every field as received, decoded) is built
  only when something asks for it, once.
"""

from __future__ import annotations

from multidict import CIMultiDict, CIMultiDictProxy

# RFC 9110 §7.6.1: fields of one connection only. Expect is answered by the listener
# itself (100 Continue), and the sender frames the body anew (Content-Length and
# Transfer-Encoding), so none of them is forwarded.
HOP_BY_HOP = frozenset(
    (
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"expect",
        b"content-length",
    )
)
# Looked at by the listener or the forwarding hop: these pass on unchanged, ...
_NOTED_PASSING = frozenset((b"x-request-id", b"tracestate"))
# ... and these the hop writes anew (the trace context once per attempt).
_REWRITTEN = frozenset((b"host", b"x-forwarded-for", b"traceparent"))
NOTED = HOP_BY_HOP | _NOTED_PASSING | _REWRITTEN | {b"x-forwarded-proto", b"x-forwarded-host"}
_WITHHELD = HOP_BY_HOP | _REWRITTEN


class RequestFields:
    __slots__ = ("_headers", "noted", "passing", "raw", "repeated")

    def __init__(self) -> None:
        self.raw: list[tuple[bytes, bytes]] = []
        self.passing: list[bytes] = []
        self.noted: dict[bytes, bytes] = {}
        self.repeated: frozenset[bytes] | set[bytes] = frozenset()
        self._headers: CIMultiDictProxy[str] | None = None

    def add(self, name: bytes, value: bytes) -> None:
        self.raw.append((name, value))
        lowered = name.lower()
        if lowered in NOTED:
            noted = self.noted
            if lowered in noted:
                if not self.repeated:
                    self.repeated = set()
                self.repeated.add(lowered)  # type: ignore[union-attr]
            else:
                noted[lowered] = value
            if lowered in _WITHHELD:
                return
        self.passing += (name, b": ", value, b"\r\n")

    def __len__(self) -> int:
        return len(self.raw)

    def first(self, lowered: bytes) -> bytes | None:
        """The first value of a noted field, by its lower-case name."""
        return self.noted.get(lowered)

    def values(self, lowered: bytes) -> list[bytes]:
        """Every value of a field, by its lower-case name, in arrival order."""
        return [value for name, value in self.raw if name.lower() == lowered]

    def get(self, name: str) -> str | None:
        """The first value of any field, decoded; no mapping is built for it."""
        wanted = name.lower().encode("latin-1")
        value = self.noted.get(wanted) if wanted in NOTED else None
        if value is None and wanted not in NOTED:
            for field, given in self.raw:
                if field.lower() == wanted:
                    value = given
                    break
        return value.decode("utf-8", "surrogateescape") if value is not None else None

    def connection_names(self) -> frozenset[bytes]:
        """The fields the ``Connection`` field names, beyond the hop-by-hop set."""
        if b"connection" not in self.noted:
            return frozenset()
        names = {
            token.strip().lower()
            for value in self.values(b"connection")
            for token in value.split(b",")
        }
        return frozenset(names - HOP_BY_HOP - {b"", b"close"})

    def passing_without(self, drop: frozenset[bytes]) -> list[bytes]:
        """``passing`` without the fields named in ``drop`` (lower-case)."""
        out: list[bytes] = []
        for name, value in self.raw:
            lowered = name.lower()
            if lowered not in drop and lowered not in _WITHHELD:
                out += (name, b": ", value, b"\r\n")
        return out

    def headers(self, host: str | None) -> CIMultiDictProxy[str]:
        """Every field as received, decoded, with ``Host`` set to ``host`` when the request
        target named an authority (RFC 9112 §3.2.2)."""
        headers = self._headers
        if headers is None:
            mapping: CIMultiDict[str] = CIMultiDict(
                [
                    (name.decode("latin-1"), value.decode("utf-8", "surrogateescape"))
                    for name, value in self.raw
                ]
            )
            if host is not None and mapping.get("Host") != host:
                mapping["Host"] = host
            headers = self._headers = CIMultiDictProxy(mapping)
        return headers
