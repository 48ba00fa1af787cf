"""RFC 9112 head rules llhttp leaves to us: pure checks, table-driven."""

from __future__ import annotations

import pytest

from sidecar.listener.fields import RequestFields
from sidecar.listener.head_rules import (
    BAD_HOST,
    MANY_HOSTS,
    MISSING_HOST,
    ONLY_HTTP,
    TE_IN_HTTP10,
    UNKNOWN_CODING,
    Target,
    check_head,
    foreign_protocol,
    split_target,
    transfer_coding_refusal,
    version_refusal,
)


def head(*fields: tuple[str, str]) -> RequestFields:
    parsed = RequestFields()
    for name, value in fields:
        parsed.add(name.encode(), value.encode())
    return parsed


@pytest.mark.parametrize(
    ("version", "fields", "expected"),
    [
        ("1.1", [("Host", "a")], None),
        ("1.1", [("Host", "a:8080")], None),
        ("1.1", [("Host", "[::1]:80")], None),
        ("1.1", [("Host", "")], None),  # RFC 9112 §3.2: empty when the target has no authority
        ("1.0", [], None),  # HTTP/1.0 needs no Host
        ("1.1", [], MISSING_HOST),
        ("1.1", [("Host", "a"), ("Host", "a")], MANY_HOSTS),
        ("1.0", [("Host", "a"), ("host", "b")], MANY_HOSTS),
        ("1.1", [("Host", "a b")], BAD_HOST),
        ("1.1", [("Host", "a/b")], BAD_HOST),
        ("1.1", [("Host", "user@a")], BAD_HOST),
        ("1.1", [("Host", "a"), ("Transfer-Encoding", "chunked")], None),
        ("1.1", [("Host", "a"), ("Transfer-Encoding", "gzip, chunked")], UNKNOWN_CODING),
        (
            "1.1",
            [("Host", "a"), ("Transfer-Encoding", "gzip"), ("Transfer-Encoding", "chunked")],
            UNKNOWN_CODING,
        ),
        ("1.0", [("Transfer-Encoding", "chunked")], TE_IN_HTTP10),
    ],
)
def test_check_head(version, fields, expected):
    assert check_head(version, head(*fields)) == expected


@pytest.mark.parametrize(
    ("version", "status"), [("1.1", None), ("1.0", None), ("2.0", 505), ("0.9", 505)]
)
def test_only_http_1_0_and_1_1_are_served(version, status):
    refusal = version_refusal(version)
    assert (refusal.status if refusal else None) == status


@pytest.mark.parametrize(
    ("chunk", "status"),
    [
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n", 501),
        (b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\nTransfer-Encoding: chunked\r\n", 501),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n", 400),
        (b"the field is not in this read", 400),
    ],
)
def test_a_coding_after_chunked_is_501_when_repeated_else_400(chunk, status):
    assert transfer_coding_refusal(chunk).status == status


def test_foreign_protocols_are_told_from_http_by_the_bytes_after_the_target():
    assert foreign_protocol(b"GET /x RTSP/1.0\r\nHost: a\r\n", b"/x")
    assert foreign_protocol(b"SOURCE /m ICE/1.0\r\n", b"/m")
    assert not foreign_protocol(b"GET /x HTTP/1.0\r\nUser-Agent: RTSP/1.0 fan\r\n", b"/x")
    assert not foreign_protocol(None, b"/x")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/a?b", Target("/a?b", None)),
        ("*", Target("*", None)),
        ("payments:443", Target("payments:443", None)),  # CONNECT's authority form
        ("http://payments/x?y=1", Target("/x?y=1", "payments")),
        ("HTTP://payments:8080", Target("/", "payments:8080")),
        ("http://payments?q", Target("/?q", "payments")),
        ("http://payments/x#frag", Target("/x", "payments")),
        ("https://payments/x", ONLY_HTTP),
        ("http:///x", BAD_HOST),
        ("http://user@evil/x", BAD_HOST),
    ],
)
def test_request_targets(raw, expected):
    assert split_target(raw) == expected
