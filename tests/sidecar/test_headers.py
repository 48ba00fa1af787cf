"""forwardable(): the same fields, in the same order, as a field-by-field filter would keep."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from sidecar.pipeline.headers import HOP_BY_HOP, HeaderRules, forwardable


def reference(fields: list[tuple[str, str]], rules: HeaderRules | None) -> list[tuple[str, str]]:
    named = {
        token.strip().lower()
        for name, value in fields
        if name.lower() == "connection"
        for token in value.split(",")
        if token.strip()
    }
    drop = HOP_BY_HOP | named | (rules.remove if rules else frozenset())
    kept = [(n, v) for n, v in fields if n.lower() not in drop]
    for name, value in rules.add if rules else ():
        # Set, as a mapping does: the first field of that name takes the value in place.
        at = [i for i, (n, _) in enumerate(kept) if n.lower() == name.lower()]
        if not at:
            kept.append((name, value))
            continue
        kept[at[0]] = (name, value)
        kept = [f for i, f in enumerate(kept) if i not in at[1:]]
    return kept


CASES = [
    [("Host", "a")],
    [("Host", "a"), ("Accept", "*/*"), ("Accept", "text/html"), ("X-Trace", "1")],
    [("Connection", "keep-alive, X-Hop"), ("x-hop", "1"), ("X-HOP", "2"), ("Keep-Alive", "5")],
    [("TE", "trailers"), ("Transfer-Encoding", "chunked"), ("Upgrade", "h2c"), ("Expect", "x")],
    [("Proxy-Authorization", "b"), ("Proxy-Connection", "c"), ("Trailer", "d"), ("Via", "1.1 x")],
    [("Connection", " , close ,"), ("Server", "nginx"), ("Content-Length", "3")],
]
RULES = [
    None,
    HeaderRules({}, ()),
    HeaderRules({"X-Added": "yes", "accept": "json"}, ("X-Trace", "server")),
]


@pytest.mark.parametrize("rules", RULES)
@pytest.mark.parametrize("fields", CASES)
def test_forwardable_matches_a_field_by_field_filter(
    fields: list[tuple[str, str]], rules: HeaderRules | None
) -> None:
    headers = CIMultiDictProxy(CIMultiDict(fields))
    assert list(forwardable(headers, rules).items()) == reference(fields, rules)
    assert list(headers.items()) == fields  # the original is left as it was
