"""Header rules of a proxy hop: hop-by-hop removal, X-Forwarded-*, request ids.

RFC 9110 §7.6.1: ``Connection`` and the fields it names, plus the classic hop-by-hop set,
apply to one connection only and are never forwarded. Header rules from config are
compiled once into ``HeaderRules``; per request we only copy and apply.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from multidict import CIMultiDict, CIMultiDictProxy, istr

HOP_BY_HOP = frozenset(
    (
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
        # The sidecar answers Expect itself (its listener sends 100 Continue), so it is not
        # forwarded.
        "expect",
    )
)
_CONNECTION = istr("Connection")
_HOP_BY_HOP_KEYS = tuple(istr(name) for name in sorted(HOP_BY_HOP))
_HOP_BY_HOP_BYTES = frozenset(name.encode() for name in HOP_BY_HOP)


class HeaderRules:
    __slots__ = ("add", "add_block", "drop", "remove")

    def __init__(self, add: Mapping[str, str], remove: Iterable[str]) -> None:
        self.add = tuple(add.items())
        self.remove = frozenset(h.lower() for h in remove)
        # The same rules for header fields kept as bytes: what never passes (hop-by-hop,
        # removed, replaced by an added field, the length the sender frames anew), and
        # the added fields as one block.
        self.drop = (
            _HOP_BY_HOP_BYTES
            | {name.lower().encode() for name in (*self.remove, *add)}
            | {b"content-length"}
        )
        self.add_block = "".join(f"{k}: {v}\r\n" for k, v in self.add).encode()


def forward_fields(fields: list[tuple[bytes, bytes]], rules: HeaderRules) -> bytes:
    """``fields`` as the header block sent on: ``Name: value\\r\\n`` for each field that
    passes ``rules.drop`` and the fields the ``Connection`` field names, then the added
    fields. Bytes pass through as they came (no decoding, no re-encoding)."""
    drop = rules.drop
    kept: list[bytes] = []
    named: set[bytes] = set()
    for name, value in fields:
        lowered = name.lower()
        if lowered in drop:
            if lowered == b"connection":
                named.update(t.strip().lower() for t in value.split(b","))
            continue
        kept += (name, b": ", value, b"\r\n")
    named.discard(b"")
    if not named.issubset(_HOP_BY_HOP_BYTES):  # rare: a field only this hop may see
        return _without(fields, drop | named) + rules.add_block
    kept.append(rules.add_block)
    return b"".join(kept)


def _without(fields: list[tuple[bytes, bytes]], drop: frozenset[bytes]) -> bytes:
    return b"".join(
        b"%s: %s\r\n" % (name, value) for name, value in fields if name.lower() not in drop
    )


def forwardable(
    headers: CIMultiDictProxy[str] | CIMultiDict[str], rules: HeaderRules | None = None
) -> CIMultiDict[str]:
    """A copy of ``headers`` without hop-by-hop fields, with config rules applied."""
    # Copy whole (in C), then delete what must go: a fixed number of lookups, where
    # filtering field by field costs a lower-casing and an insert per field.
    out: CIMultiDict[str] = CIMultiDict(headers)
    connection = out.get(_CONNECTION)
    if connection:
        for token in connection.split(","):
            token = token.strip()
            if token:
                out.popall(token, None)
    for name in _HOP_BY_HOP_KEYS:
        if name in out:
            del out[name]
    if rules is not None:
        for name in rules.remove:
            if name in out:
                del out[name]
        for name, value in rules.add:
            out[name] = value
    return out
