"""Large bodies stream through H1Transport in bounded memory, both ways."""

from __future__ import annotations

import asyncio
import hashlib
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import pytest
from aiohttp import ClientSession, web

from sidecar.pipeline.errors import DownstreamDisconnect, UpstreamReset
from sidecar.transport.h1_client import H1Transport
from sidecar.transport.request_head import RequestHead
from tests.transport.servers import RawServer, aiohttp_app, read_request, response

SIZE = 20 * 1024 * 1024
PIECE = bytes(range(256)) * 256  # 64 KiB
PEAK_LIMIT = 4 * 1024 * 1024  # a fifth of the body: it is never held whole
RELAY_PEAK_LIMIT = 8 * 1024 * 1024  # the same, with an aiohttp client and server around it


@contextmanager
def peak_memory() -> Iterator[list[int]]:
    tracemalloc.start()
    peak: list[int] = []
    try:
        yield peak
    finally:
        peak.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


async def pieces(total: int) -> AsyncIterator[bytes]:
    for _ in range(total // len(PIECE)):
        yield PIECE


def expected_digest(total: int) -> str:
    digest = hashlib.sha256()
    for _ in range(total // len(PIECE)):
        digest.update(PIECE)
    return digest.hexdigest()


async def digesting_handler(request: web.Request) -> web.Response:
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.content.iter_any():
        digest.update(chunk)
        size += len(chunk)
    return web.Response(
        text=f"{size} {digest.hexdigest()} {request.headers.get('Content-Length')}"
        f" {request.headers.get('Transfer-Encoding')}"
    )


@pytest.mark.parametrize("length_known", [True, False], ids=["content-length", "chunked"])
async def test_large_upload_streams_in_bounded_memory(
    transport: H1Transport, length_known: bool
) -> None:
    head = RequestHead.of("POST", "/", length=SIZE if length_known else None)
    async with aiohttp_app(digesting_handler) as endpoint:
        with peak_memory() as peak:
            resp = await transport.send(endpoint, head, pieces(SIZE))
            answer = await resp.read()
            resp.release()
    size, digest, length, te = answer.decode().split()
    assert (int(size), digest) == (SIZE, expected_digest(SIZE))
    assert (length, te) == ((str(SIZE), "None") if length_known else ("None", "chunked"))
    assert peak[0] < PEAK_LIMIT
    assert transport.pool(endpoint).idle_count == 1


@pytest.mark.parametrize("length_known", [True, False], ids=["content-length", "chunked"])
async def test_a_downstream_request_body_is_relayed_in_bounded_memory(
    transport: H1Transport, length_known: bool
) -> None:
    """As the proxy does it: the downstream request's ``StreamReader`` is the body."""

    async with aiohttp_app(digesting_handler) as backend:

        async def front(request: web.Request) -> web.Response:
            head = RequestHead.of("POST", "/", length=request.content_length)
            resp = await transport.send(backend, head, request.content)
            answer = await resp.read()
            resp.release()
            return web.Response(body=answer)

        async with aiohttp_app(front) as front_endpoint, ClientSession() as client:
            headers = {"Content-Length": str(SIZE)} if length_known else {}
            with peak_memory() as peak:
                async with client.post(
                    f"http://{front_endpoint.id}/", data=pieces(SIZE), headers=headers
                ) as answer:
                    text = await answer.text()
    size, digest, length, te = text.split()
    assert (int(size), digest) == (SIZE, expected_digest(SIZE))
    assert (length, te) == ((str(SIZE), "None") if length_known else ("None", "chunked"))
    assert peak[0] < RELAY_PEAK_LIMIT


async def test_large_download_streams_in_bounded_memory(transport: H1Transport) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        out = web.StreamResponse(headers={"Content-Length": str(SIZE)})
        await out.prepare(request)
        for _ in range(SIZE // len(PIECE)):
            await out.write(PIECE)
        await out.write_eof()
        return out

    async with aiohttp_app(handler) as endpoint:
        with peak_memory() as peak:
            resp = await transport.send(endpoint, RequestHead.of("GET", "/"), None)
            assert resp.content_length == SIZE
            digest = hashlib.sha256()
            size = 0
            async for chunk in resp.iter_chunks():
                if not size:
                    # A stalled downstream: meanwhile the upstream sends all it is allowed to.
                    await asyncio.sleep(0.2)
                digest.update(chunk)
                size += len(chunk)
            resp.release()
    assert (size, digest.hexdigest()) == (SIZE, expected_digest(SIZE))
    assert peak[0] < PEAK_LIMIT
    assert transport.pool(endpoint).idle_count == 1


async def test_a_stream_shorter_than_its_content_length_fails_and_is_dropped(
    transport: H1Transport,
) -> None:
    async def script(reader, writer, index):
        await read_request(reader)  # waits for 10 bytes that never all come
        writer.write(response("200 OK"))

    server = RawServer(script)
    async with server as endpoint:
        head = RequestHead.of("POST", "/", length=10)
        with pytest.raises(UpstreamReset, match="ended before its Content-Length"):
            await transport.send(endpoint, head, pieces(0))
        assert transport.pool(endpoint).open_count == 0


async def test_an_answer_before_the_upload_ended_is_returned_and_not_pooled(
    transport: H1Transport,
) -> None:
    more = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"first"
        await more.wait()  # never set: the upload stalls
        yield b"never"

    async def script(reader, writer, index):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(response("413 Content Too Large", b"no"))
        await reader.read()

    async with RawServer(script) as endpoint:
        resp = await transport.send(endpoint, RequestHead.of("POST", "/"), body())
        assert (resp.status, await resp.read()) == (413, b"no")
        resp.release()
        assert transport.pool(endpoint).idle_count == 0


async def test_a_request_body_whose_client_leaves_mid_way_is_the_clients_doing(
    transport: H1Transport,
) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"some"
        raise ConnectionResetError("the downstream client went away")

    async def script(reader, writer, index):
        await read_request(reader)  # the chunked body never ends
        writer.write(response("200 OK"))

    async with RawServer(script) as endpoint:
        with pytest.raises(DownstreamDisconnect) as caught:
            await transport.send(endpoint, RequestHead.of("POST", "/"), body())
        assert not caught.value.outcome.judges_endpoint  # never charged to the endpoint
        assert transport.pool(endpoint).open_count == 0


async def test_a_request_body_that_fails_otherwise_is_an_upstream_reset(
    transport: H1Transport,
) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"some"
        raise OSError("the body's source failed")

    async def script(reader, writer, index):
        await read_request(reader)  # the chunked body never ends
        writer.write(response("200 OK"))

    async with RawServer(script) as endpoint:
        with pytest.raises(UpstreamReset, match="could not be sent"):
            await transport.send(endpoint, RequestHead.of("POST", "/"), body())
        assert transport.pool(endpoint).open_count == 0
