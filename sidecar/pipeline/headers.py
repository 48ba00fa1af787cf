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
        # The sidecar answers Expect itself (aiohttp sends 100 Continue), so it is not forwarded.
        "expect",
    )
)
_CONNECTION = istr("Connection")


class HeaderRules:
    __slots__ = ("add", "remove")

    def __init__(self, add: Mapping[str, str], remove: Iterable[str]) -> None:
        self.add = tuple(add.items())
        self.remove = frozenset(h.lower() for h in remove)


def forwardable(
    headers: CIMultiDictProxy[str] | CIMultiDict[str], rules: HeaderRules | None = None
) -> CIMultiDict[str]:
    """A copy of ``headers`` without hop-by-hop fields, with config rules applied."""
    drop = HOP_BY_HOP
    connection = headers.get(_CONNECTION)
    if connection:
        drop = drop | {t.strip().lower() for t in connection.split(",") if t.strip()}
    if rules is not None and rules.remove:
        drop = drop | rules.remove
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        if name.lower() not in drop:
            out.add(name, value)
    if rules is not None:
        for name, value in rules.add:
            out[name] = value
    return out
