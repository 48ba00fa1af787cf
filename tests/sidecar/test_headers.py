"""request_fields() and forward_fields(): the same fields, in the same order, as a
field-by-field filter would keep."""

from __future__ import annotations

import pytest

from sidecar.listener.fields import RequestFields
from sidecar.pipeline.headers import HeaderRules, forward_fields, request_fields

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
        "expect",
    )
)


def connection_named(fields: list[tuple[str, str]]) -> set[str]:
    return {
        token.strip().lower()
        for name, value in fields
        if name.lower() == "connection"
        for token in value.split(",")
        if token.strip()
    }


def received(fields: list[tuple[str, str]]) -> RequestFields:
    parsed = RequestFields()
    for name, value in fields:
        parsed.add(name.encode(), value.encode())
    return parsed


def request_reference(fields: list[tuple[str, str]], rules: HeaderRules) -> bytes:
    """request_fields' contract: Host first, then the request's end-to-end fields minus
    those Connection names and those the rules remove or replace, then the forwarding
    fields this hop writes, then the added fields."""
    named = connection_named(fields)
    rewritten = {"host", "x-forwarded-for", "traceparent", "content-length"}
    drop = HOP_BY_HOP | named | rules.remove | {n.lower() for n, _ in rules.add} | rewritten
    hosts = [v for n, v in fields if n.lower() == "host"]
    prior = [v for n, v in fields if n.lower() == "x-forwarded-for"]
    kept = [("Host", hosts[0])] if hosts else []
    kept += [(n, v) for n, v in fields if n.lower() not in drop]
    kept.append(("X-Forwarded-For", ", ".join([*prior, "10.0.0.9"])))
    names = {n.lower() for n, _ in fields}
    if "x-forwarded-proto" not in names:
        kept.append(("X-Forwarded-Proto", "http"))
    if hosts and "x-forwarded-host" not in names:
        kept.append(("X-Forwarded-Host", hosts[0]))
    kept += list(rules.add)
    return "".join(f"{n}: {v}\r\n" for n, v in kept).encode()


CASES = [
    [("Host", "a")],
    [("Host", "a"), ("Accept", "*/*"), ("Accept", "text/html"), ("X-Trace", "1")],
    [("Connection", "keep-alive, X-Hop"), ("x-hop", "1"), ("X-HOP", "2"), ("Keep-Alive", "5")],
    [("TE", "trailers"), ("Transfer-Encoding", "chunked"), ("Upgrade", "h2c"), ("Expect", "x")],
    [("Proxy-Authorization", "b"), ("Proxy-Connection", "c"), ("Trailer", "d"), ("Via", "1.1 x")],
    [("Connection", " , close ,"), ("Server", "nginx"), ("Content-Length", "3")],
    [("Host", "a"), ("X-Forwarded-For", "1.1.1.1"), ("x-forwarded-for", "2.2.2.2, 3.3.3.3")],
    [("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "b"), ("Host", "a"), ("A", "1")],
    [("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), ("B", "2")],
]
RULES = [
    HeaderRules({}, ()),
    HeaderRules({"X-Added": "yes", "accept": "json"}, ("X-Trace", "server")),
]


@pytest.mark.parametrize("rules", RULES)
@pytest.mark.parametrize("fields", CASES)
def test_request_fields_match_a_field_by_field_filter(
    fields: list[tuple[str, str]], rules: HeaderRules
) -> None:
    given = received(fields)
    host = given.first(b"host")
    block = request_fields(
        given,
        rules,
        host=host,
        forwarded_host=host,
        forwarded_for=b"10.0.0.9",
        proto_field=b"X-Forwarded-Proto: http\r\n",
        request_id=None,
    )
    assert block == request_reference(fields, rules)


def test_request_fields_pass_bytes_through_untouched() -> None:
    given = RequestFields()
    given.add(b"X-Name", b"caf\xe9 \xff\xfe")
    given.add(b"Cookie", b"a=1")
    block = request_fields(
        given,
        HeaderRules({}, ()),
        host=b"h",
        forwarded_host=None,
        forwarded_for=b"::1",
        proto_field=b"",
        request_id=b"id",
        upgrade=b"websocket",
    )
    assert block == (
        b"Host: h\r\nX-Name: caf\xe9 \xff\xfe\r\nCookie: a=1\r\nX-Forwarded-For: ::1\r\n"
        b"x-request-id: id\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    )


def block_reference(fields: list[tuple[str, str]], rules: HeaderRules) -> bytes:
    """forward_fields' contract: the response's own fields minus hop-by-hop, the fields
    Connection names, removed, replaced and Content-Length (the sender frames anew), then
    the added fields."""
    named = connection_named(fields)
    drop = HOP_BY_HOP | named | rules.remove | {n.lower() for n, _ in rules.add}
    drop |= {"content-length"}
    kept = [(n, v) for n, v in fields if n.lower() not in drop] + list(rules.add)
    return "".join(f"{n}: {v}\r\n" for n, v in kept).encode()


@pytest.mark.parametrize("rules", RULES)
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
