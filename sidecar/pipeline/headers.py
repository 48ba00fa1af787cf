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


class HeaderRules:
    __slots__ = ("add", "remove")

    def __init__(self, add: Mapping[str, str], remove: Iterable[str]) -> None:
        self.add = tuple(add.items())
        self.remove = frozenset(h.lower() for h in remove)


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
