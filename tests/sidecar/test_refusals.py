"""Requests the sidecar refuses never reach an upstream, whole or in part (RFC 9112 rules,
framing, limits), and pipelined requests before a bad one are still answered."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest

from sidecar.app import Sidecar
from tests.sidecar.harness import config_yaml, start_sidecar
from tests.sidecar.recording import RecordingBackend

LONG = b"a" * 20_000


@pytest.fixture
async def proxied() -> AsyncIterator[tuple[Sidecar, RecordingBackend]]:
    backend = await RecordingBackend().start()
    sidecar = await start_sidecar(
        config_yaml([{"name": "up", "discovery": {"static": [backend.address]}}], egress=True)
    )
    yield sidecar, backend
    await sidecar.stop()
    await backend.stop()


async def send(port: int, *parts: bytes | float) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for part in parts:
        if isinstance(part, float):
            await asyncio.sleep(part)  # the client's own pacing
            continue
        writer.write(part)
        await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return answer


def statuses(data: bytes) -> list[int]:
    return [int(s) for s in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]


def post(te: bytes, body: bytes = b"1\r\na\r\n0\r\n\r\n", version: bytes = b"1.1") -> bytes:
    return (
        b"POST / HTTP/" + version + b"\r\nHost: a\r\nTransfer-Encoding: " + te + b"\r\n\r\n" + body
    )


CASES = {
    "two Host fields": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "no Host in HTTP/1.1": (b"GET / HTTP/1.1\r\nX: y\r\n\r\n", 400),
    "a Host that is no authority": (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    "gzip before chunked": (post(b"gzip, chunked"), 501),
    "chunked twice": (post(b"chunked, chunked"), 501),
    "chunked in two fields": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
        501,
    ),
    "a coding after chunked": (post(b"chunked, gzip"), 400),
    "only gzip": (post(b"gzip", b"abc"), 400),
    "Transfer-Encoding in HTTP/1.0": (post(b"chunked", version=b"1.0"), 400),
    "Content-Length and Transfer-Encoding": (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n",
        400,
    ),
    "RTSP": (b"GET / RTSP/1.0\r\nHost: a\r\n\r\n", 400),
    "ICE": (b"SOURCE / ICE/1.0\r\nHost: a\r\n\r\n", 400),
    "HTTP/2.0 in an HTTP/1 line": (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    "HTTP/0.9 with headers": (b"GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505),
    "HTTP/1.2": (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 400),
    "a bad chunk size": (post(b"chunked", b"zz\r\na\r\n0\r\n\r\n"), 400),
    "a space in a field name": (b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", 400),
    "a folded field": (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400),
    "a 20 KB field": (b"GET / HTTP/1.1\r\nHost: a\r\nX: " + LONG + b"\r\n\r\n", 431),
    "a 70 KB head": (
        b"GET / HTTP/1.1\r\nHost: a\r\n"
        + b"".join(b"X%d: %s\r\n" % (i, b"a" * 600) for i in range(115))
        + b"\r\n",
        431,
    ),
    "150 fields": (
        b"GET / HTTP/1.1\r\nHost: a\r\n"
        + b"".join(b"X%d: a\r\n" % i for i in range(150))
        + b"\r\n",
        431,
    ),
    "a 10 KB target": (b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
    "CONNECT": (b"CONNECT up:80 HTTP/1.1\r\nHost: up:80\r\n\r\n", 400),
    "asterisk form": (b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "an https:// target": (b"GET https://up/ HTTP/1.1\r\nHost: up\r\n\r\n", 400),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_a_refused_request_never_reaches_the_backend(proxied, name):
    sidecar, backend = proxied
    raw, status = CASES[name]
    answer = await send(sidecar.address("upstream:up")[1], raw)
    assert statuses(answer) == [status], answer[:200]
    assert backend.connections == 0 and backend.received == b""
    # Counted once: by the listener (refused before any handler) or, for the targets only
    # the proxy knows it does not serve, as an answered request.
    metrics = sidecar.observer.metrics
    refused = metrics.refused.get(("upstream:up", str(status)))
    answered = metrics.downstream_requests.get(("upstream:up", f"{status // 100}xx"))
    counts = [c.value for c in (refused, answered) if c is not None]
    assert counts == [1.0]


async def test_a_small_body_is_received_whole_before_the_upstream_hears_of_it(proxied):
    sidecar, backend = proxied
    port = sidecar.address("upstream:up")[1]
    # The chunk size breaks only after the head and a first chunk went in: the body would
    # be replayable (small), so it is buffered first, and the upstream sees nothing.
    answer = await send(
        port,
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        0.1,
        b"zz\r\n",
    )
    assert statuses(answer) == [400]
    assert backend.connections == 0 and backend.received == b""


async def test_pipelined_requests_before_a_bad_one_are_answered_then_400(proxied):
    sidecar, backend = proxied
    answer = await send(
        sidecar.address("upstream:up")[1],
        b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"
        b"BAD\x01 / HTTP/1.1\r\n\r\n"
        b"GET /3 HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    assert statuses(answer) == [200, 200, 400]
    assert backend.requests == 2
    assert b"/3" not in backend.received


async def test_the_egress_listener_proxies_absolute_form_only_to_configured_upstreams(proxied):
    sidecar, backend = proxied
    port = sidecar.address("egress")[1]
    answer = await send(
        port, b"GET http://up/x HTTP/1.1\r\nHost: ignored\r\nConnection: close\r\n\r\n"
    )
    assert statuses(answer) == [200]
    assert b"GET /x HTTP/1.1\r\n" in backend.received and b"Host: up\r\n" in backend.received
    before = (backend.connections, len(backend.received))
    # The backend's own address is no configured upstream: refused, never dialled.
    answer = await send(
        port,
        b"GET http://%s/steal HTTP/1.1\r\nHost: up\r\nConnection: close\r\n\r\n"
        % backend.address.encode(),
    )
    assert statuses(answer) == [404]
    assert (backend.connections, len(backend.received)) == before
