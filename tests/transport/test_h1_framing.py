"""Response framing (chunked, close-delimited, HEAD, 204/304, 1xx) and request encoding."""

from __future__ import annotations

import pytest
from aiohttp import web

from sidecar.pipeline.errors import BadRequest
from sidecar.transport.h1_client import H1Transport, encode_request
from sidecar.transport.h1_protocol import H1Connection
from sidecar.transport.request_head import RequestHead
from tests.transport.servers import RawServer, aiohttp_app, read_request, response


def serve_forever(answer: bytes, heads: list[bytes] | None = None):
    async def script(reader, writer, index):
        while True:
            head, _ = await read_request(reader)
            if not head:
                return
            if heads is not None:
                heads.append(head)
            writer.write(answer)

    return script


async def test_chunked_answer_is_read_whole_and_the_connection_reused(
    transport: H1Transport,
) -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Kind: chunked\r\n\r\n"
        b"5\r\nhello\r\n1;ext=1\r\n,\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n"
    )
    server = RawServer(serve_forever(answer))
    async with server as endpoint:
        for _ in range(2):
            resp = await transport.send(endpoint, RequestHead.of("GET", "/"), None)
            assert resp.content_length is None
            assert resp.headers["x-kind"] == "chunked"
            assert b"".join([c async for c in resp.iter_chunks()]) == b"hello, world"
            resp.release()
        resp = await transport.send(endpoint, RequestHead.of("GET", "/"), None)
        assert await resp.read() == b"hello, world"
        resp.release()
    assert server.connections == 1


async def test_close_delimited_answer_ends_with_the_connection(transport: H1Transport) -> None:
    async def script(reader, writer, index):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nX-Index: %d\r\n\r\nuntil " % index)
        await writer.drain()
        writer.write(b"the end")

    server = RawServer(script)
    async with server as endpoint:
        for index in ("0", "1"):
            resp = await transport.send(endpoint, RequestHead.of("GET", "/"), None)
            assert (resp.status, resp.content_length, resp.headers["X-Index"]) == (200, None, index)
            assert await resp.read() == b"until the end"
            resp.release()
    assert server.connections == 2


async def test_head_answer_has_no_body_and_the_connection_stays_usable(
    transport: H1Transport,
) -> None:
    heads: list[bytes] = []

    async def script(reader, writer, index):
        while True:
            head, _ = await read_request(reader)
            if not head:
                return
            heads.append(head)
            if head.startswith(b"HEAD"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            else:
                writer.write(response("200 OK", b"after head"))

    server = RawServer(script)
    async with server as endpoint:
        for _ in range(2):
            resp = await transport.send(endpoint, RequestHead.of("HEAD", "/"), None)
            assert (resp.status, resp.content_length) == (200, 1000)
            assert await resp.read() == b""
            resp.release()
            resp = await transport.send(endpoint, RequestHead.of("GET", "/"), None)
            assert await resp.read() == b"after head"
            resp.release()
    assert server.connections == 1
    assert [h.split(b" ", 1)[0] for h in heads] == [b"HEAD", b"GET", b"HEAD", b"GET"]


async def test_head_to_an_aiohttp_server_released_unread(transport: H1Transport) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 5000)

    async with aiohttp_app(handler) as endpoint:
        for method in ("HEAD", "GET", "HEAD"):
            resp = await transport.send(endpoint, RequestHead.of(method, "/"), None)
            assert (resp.status, resp.content_length) == (200, 5000)
            if method == "GET":
                assert len(await resp.read()) == 5000
            resp.release()  # what the proxy does for HEAD: release without reading
        assert transport.pool(endpoint).open_count == 1


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n",
        b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 123\r\n\r\n',
    ],
    ids=["204", "304"],
)
async def test_no_body_statuses_release_unread_and_reuse(
    transport: H1Transport, answer: bytes
) -> None:
    server = RawServer(serve_forever(answer))
    async with server as endpoint:
        for _ in range(3):
            resp = await transport.send(endpoint, RequestHead.of("GET", "/"), None)
            assert resp.status in (204, 304)
            resp.release()
        resp = await transport.send(endpoint, RequestHead.of("GET", "/"), None)
        assert await resp.read() == b""
        resp.release()
    assert server.connections == 1


async def test_informational_answers_are_skipped(transport: H1Transport) -> None:
    answer = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
        + response("201 Created", b"made", "X-Final: yes")
    )
    server = RawServer(serve_forever(answer))
    async with server as endpoint:
        for _ in range(2):
            resp = await transport.send(endpoint, RequestHead.of("POST", "/"), b"data")
            assert (resp.status, resp.reason) == (201, "Created")
            assert "Link" not in resp.headers and resp.headers["X-Final"] == "yes"
            assert await resp.read() == b"made"
            resp.release()
    assert server.connections == 1


async def test_header_names_and_repeats_are_kept_as_received(transport: H1Transport) -> None:
    answer = response("200 Fine Thanks", b"", "X-MiXeD: a", "Set-Cookie: a=1", "set-cookie: b=2")
    async with RawServer(serve_forever(answer)) as endpoint:
        resp = await transport.send(endpoint, RequestHead.of("GET", "/"), None)
        resp.release()
    assert resp.reason == "Fine Thanks"
    assert list(resp.headers.items()) == [
        ("Content-Length", "0"),
        ("X-MiXeD", "a"),
        ("Set-Cookie", "a=1"),
        ("set-cookie", "b=2"),
    ]


async def test_the_request_reaches_the_wire_as_encoded(transport: H1Transport) -> None:
    heads: list[bytes] = []
    async with RawServer(serve_forever(response("200 OK"), heads)) as endpoint:
        headers = [("Host", "svc.internal"), ("X-A", "1"), ("x-a", "2")]
        resp = await transport.send(endpoint, RequestHead.of("PUT", "/p?q=1", headers), b"body")
        resp.release()
    assert heads == [
        b"PUT /p?q=1 HTTP/1.1\r\nHost: svc.internal\r\nX-A: 1\r\nx-a: 2\r\n"
        b"Content-Length: 4\r\n\r\n"
    ]


async def _stream():  # a body whose length is not known up front
    yield b"x"


@pytest.mark.parametrize(
    ("method", "headers", "body", "head"),
    [
        ("GET", [], None, "GET / HTTP/1.1\r\nHost: h:1\r\n\r\n"),
        ("GET", [("Host", "a.b")], None, "GET / HTTP/1.1\r\nHost: a.b\r\n\r\n"),
        ("POST", [("Host", "a")], None, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"),
        (
            "POST",
            [("Host", "a"), ("Content-Length", "3")],
            b"abc",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n",
        ),
        (
            "POST",
            [("Host", "a"), ("Content-Length", "9"), ("Transfer-Encoding", "chunked"), ("X", "y")],
            b"abc",
            "POST / HTTP/1.1\r\nHost: a\r\nX: y\r\nContent-Length: 3\r\n\r\n",
        ),
        (
            "POST",
            [("Host", "a"), ("Content-Length", "1")],
            _stream(),
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n",
        ),
        (
            "POST",
            [("Host", "a")],
            _stream(),
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        ),
        (
            "GET",
            [("Host", "a"), ("X-U", "caf\u00e9")],
            None,
            "GET / HTTP/1.1\r\nHost: a\r\nX-U: caf\u00e9\r\n\r\n",
        ),
    ],
    ids=[
        "host-added",
        "host-kept",
        "empty-post",
        "bytes",
        "framing-replaced",
        "stream-with-length",
        "stream-chunked",
        "utf8",
    ],
)
def test_encode_request(method, headers, body, head) -> None:
    given = next((int(v) for k, v in headers if k.lower() == "content-length"), None)
    streamed = body is not None and not isinstance(body, bytes)
    request = RequestHead.of(method, "/", headers, length=given if streamed else None)
    encoded, _, _ = encode_request(request, body, "h:1")
    assert encoded == head.encode()


@pytest.mark.parametrize(
    ("path", "headers"),
    [("/", [("X", "a\r\nInjected: 1")]), ("/", [("X", "a\nb")]), ("/\r\nX: 1", [])],
)
def test_a_head_refuses_cr_and_lf(path, headers) -> None:
    with pytest.raises(BadRequest):
        RequestHead.of("GET", path, headers)


def test_encode_request_keeps_stream_length() -> None:
    body = _stream()
    _, payload, length = encode_request(RequestHead.of("POST", "/", length=12), body, "h:1")
    assert (payload, length) == (body, 12)


@pytest.mark.parametrize(
    ("size", "calls"),
    [(0, [("write", 1)]), (1000, [("write", 1)]), (1 << 20, [("writelines", 2)])],
)
async def test_a_bytes_request_is_handed_to_the_socket_in_one_call(
    transport: H1Transport, monkeypatch: pytest.MonkeyPatch, size: int, calls: list
) -> None:
    seen: list[tuple[str, int]] = []
    write, writelines = H1Connection.write, H1Connection.writelines

    def recording_write(self: H1Connection, data: bytes) -> None:
        seen.append(("write", 1))
        write(self, data)

    def recording_writelines(self: H1Connection, data: tuple[bytes, ...]) -> None:
        seen.append(("writelines", len(data)))
        writelines(self, data)

    monkeypatch.setattr(H1Connection, "write", recording_write)
    monkeypatch.setattr(H1Connection, "writelines", recording_writelines)

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=str(len(await request.read())))

    async with aiohttp_app(handler) as endpoint:
        resp = await transport.send(endpoint, RequestHead.of("POST", "/"), b"x" * size)
        assert await resp.read() == str(size).encode()
        resp.release()
    assert seen == calls


def test_a_body_of_another_kind_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        encode_request(RequestHead.of("POST", "/"), 42, "h:1")
