"""forwardable() and forward_fields(): the same fields, in the same order, as a field-by-field
filter would keep."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from sidecar.pipeline.headers import HOP_BY_HOP, HeaderRules, forward_fields, forwardable


def connection_named(fields: list[tuple[str, str]]) -> set[str]:
    return {
        token.strip().lower()
        for name, value in fields
        if name.lower() == "connection"
        for token in value.split(",")
        if token.strip()
    }


def reference(fields: list[tuple[str, str]], rules: HeaderRules | None) -> list[tuple[str, str]]:
    named = connection_named(fields)
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


def block_reference(fields: list[tuple[str, str]], rules: HeaderRules) -> bytes:
    """forward_fields' contract: the response's own fields minus hop-by-hop, the fields
    Connection names, removed, replaced and Content-Length (the sender frames anew), then
    the added fields."""
    named = connection_named(fields)
    drop = HOP_BY_HOP | named | rules.remove | {n.lower() for n, _ in rules.add}
    drop |= {"content-length"}
    kept = [(n, v) for n, v in fields if n.lower() not in drop] + list(rules.add)
    return "".join(f"{n}: {v}\r\n" for n, v in kept).encode()


@pytest.mark.parametrize("rules", RULES[1:])
@pytest.mark.parametrize("fields", CASES)
def test_forward_fields_matches_a_field_by_field_filter(
    fields: list[tuple[str, str]], rules: HeaderRules
) -> None:
    raw = [(n.encode(), v.encode()) for n, v in fields]
    assert forward_fields(raw, rules) == block_reference(fields, rules)


def test_forward_fields_passes_bytes_through_untouched() -> None:
    raw = [(b"X-Name", b"caf\xe9 \xff\xfe"), (b"Set-Cookie", b"a=1"), (b"Set-Cookie", b"b=2")]
    block = forward_fields(raw, HeaderRules({}, ()))
    assert block == b"X-Name: caf\xe9 \xff\xfe\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
