"""Header rules of a proxy hop: hop-by-hop removal, X-Forwarded-*, request ids — on bytes.

RFC 9110 §7.6.1: ``Connection`` and the fields it names, plus the classic hop-by-hop set,
apply to one connection only and are never forwarded. Header rules from config are
compiled once into ``HeaderRules``. Both directions work on the fields as they were
received, bytes in and bytes out: a request's end-to-end fields were set aside by the
listener as they arrived (``RequestFields.passing``), a response's are filtered here; the
fields a hop writes itself are appended as bytes. Only a request with a rule that removes
or replaces a field, or a ``Connection`` field naming one, is filtered field by field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sidecar.listener.fields import HOP_BY_HOP, RequestFields

_HOP_BY_HOP_BYTES = HOP_BY_HOP
_EMPTY: frozenset[bytes] = frozenset()


class HeaderRules:
    __slots__ = ("add", "add_block", "drop", "remove", "replaces")

    def __init__(self, add: Mapping[str, str], remove: Iterable[str]) -> None:
        self.add = tuple(add.items())
        self.remove = frozenset(h.lower() for h in remove)
        # Fields these rules take out of what passes: removed, or replaced by an added one.
        self.replaces = frozenset(name.lower().encode() for name in (*self.remove, *add))
        # What never passes a hop (hop-by-hop, the length the sender frames anew) and what
        # these rules take out.
        self.drop = HOP_BY_HOP | self.replaces
        self.add_block = "".join(f"{k}: {v}\r\n" for k, v in self.add).encode()


def request_fields(
    fields: RequestFields,
    rules: HeaderRules,
    *,
    host: bytes | None,
    forwarded_host: bytes | None,
    forwarded_for: bytes,
    proto_field: bytes,
    request_id: bytes | None,
    upgrade: bytes | None = None,
    withhold: frozenset[bytes] = _EMPTY,
) -> bytes:
    r"""The header block of a request sent on, in this order: ``Host`` (when there is
    one); the fields that pass (``fields.passing``, filtered field by field only when
    something must go: a rule's field, a field ``Connection`` names, what the caller
    ``withhold``\ s); X-Forwarded-For with ``forwarded_for`` appended; X-Forwarded-Proto
    (``proto_field``) and X-Forwarded-Host (``forwarded_host``, where the request was
    addressed) unless the client sent them; a fresh ``request_id`` when given; the upgrade
    asked for again (``Connection`` and ``Upgrade`` are hop-by-hop, yet this hop must ask
    too); the rules' added fields."""
    noted = fields.noted
    drop = rules.replaces | withhold
    if b"connection" in noted:
        drop |= fields.connection_names()
    pieces: list[bytes] = [b"Host: ", host, b"\r\n"] if host is not None else []
    pieces += fields.passing_without(drop) if drop else fields.passing
    prior = noted.get(b"x-forwarded-for")
    if prior is not None and b"x-forwarded-for" in fields.repeated:
        prior = b", ".join(fields.values(b"x-forwarded-for"))
    if prior:
        pieces += (b"X-Forwarded-For: ", prior, b", ", forwarded_for, b"\r\n")
    else:
        pieces += (b"X-Forwarded-For: ", forwarded_for, b"\r\n")
    if b"x-forwarded-proto" not in noted:
        pieces.append(proto_field)
    if forwarded_host and b"x-forwarded-host" not in noted:
        pieces += (b"X-Forwarded-Host: ", forwarded_host, b"\r\n")
    if request_id is not None:
        pieces += (b"x-request-id: ", request_id, b"\r\n")
    if upgrade is not None:
        pieces += (b"Connection: Upgrade\r\nUpgrade: ", upgrade, b"\r\n")
    pieces.append(rules.add_block)
    return b"".join(pieces)


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
