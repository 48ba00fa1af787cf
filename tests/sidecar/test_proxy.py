"""Data-plane behaviour through a real sidecar and real aiohttp backends on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest
from aiohttp import web

from tests.sidecar.harness import Backend, config_yaml, url


def hold_until(backend: Backend, text: str) -> asyncio.Event:
    """Make ``backend`` answer ``text`` only once the returned event is set."""
    release = asyncio.Event()

    async def held(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text=text)

    backend.behaviour = held
    return release


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def test_each_upstream_listener_routes_to_its_own_cluster(backends, sidecar_factory, client):
    a, b = await backends(2)
    sc = await sidecar_factory(
        config_yaml(
            [
                {"name": "alpha", "discovery": {"static": [a.address]}},
                {"name": "beta", "discovery": {"static": [b.address]}},
            ]
        )
    )
    async with client.get(url(sc, "upstream:alpha", "/one")) as r:
        assert (await r.text()).startswith(f"{a.name} GET /one")
    async with client.get(url(sc, "upstream:beta", "/two")) as r:
        assert (await r.text()).startswith(f"{b.name} GET /two")


async def test_inbound_listener_forwards_to_the_local_app(backends, sidecar_factory, client):
    (app,) = await backends(1)
    sc = await sidecar_factory(config_yaml([], service_port=app.port, inbound=True))
    async with client.get(url(sc, "inbound", "/orders/7?x=1")) as r:
        assert r.status == 200
        assert (await r.text()).startswith(f"{app.name} GET /orders/7?x=1")
        assert "x-pilotfish-attempts" not in r.headers


async def test_header_rules_forwarded_headers_and_rewrite(backends, sidecar_factory, client):
    (b,) = await backends(1)
    sc = await sidecar_factory(
        config_yaml(
            [
                {
                    "name": "payments",
                    "discovery": {"static": [b.address]},
                    "request_headers": {"add": {"x-via": "pilotfish"}, "remove": ["x-internal"]},
                    "response_headers": {
                        "add": {"x-served-by": "pilotfish"},
                        "remove": ["x-backend"],
                    },
                    "rewrite": {"host": "payments.internal", "strip_prefix": "/api"},
                }
            ]
        )
    )
    headers = {
        "x-internal": "secret",
        "Connection": "keep-alive, x-hop",
        "x-hop": "drop me",
        "Keep-Alive": "timeout=5",
        "X-Forwarded-For": "10.1.1.1",
        "x-request-id": "req-42",
        "TE": "trailers",
        "x-kept": "yes",
    }
    async with client.get(url(sc, "upstream:payments", "/api/pay?id=3"), headers=headers) as r:
        assert r.status == 200
        assert r.headers["x-served-by"] == "pilotfish"
        assert "x-backend" not in r.headers
    seen = {k.lower(): v for k, v in b.requests[-1]["headers"].items()}
    assert b.requests[-1]["path"] == "/pay?id=3"
    assert seen["host"] == "payments.internal"
    assert seen["x-via"] == "pilotfish"
    assert seen["x-kept"] == "yes"
    for gone in ("x-internal", "x-hop", "keep-alive", "te"):
        assert gone not in seen, gone
    assert seen["x-forwarded-for"] == "10.1.1.1, 127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"].startswith("127.0.0.1:")
    assert seen["x-request-id"] == "req-42"


async def test_request_id_is_generated_when_absent(backends, sidecar_factory, client):
    (b,) = await backends(1)
    sc = await sidecar_factory(config_yaml([{"name": "a", "discovery": {"static": [b.address]}}]))
    for _ in range(2):
        async with client.get(url(sc, "upstream:a", "/")) as r:
            assert r.status == 200
    ids = [
        {k.lower(): v for k, v in req["headers"].items()}.get("x-request-id") for req in b.requests
    ]
    assert all(i and len(i) == 32 for i in ids)
    assert ids[0] != ids[1]


async def test_strip_prefix_only_strips_a_whole_segment(backends, sidecar_factory, client):
    (b,) = await backends(1)
    sc = await sidecar_factory(
        config_yaml(
            [
                {
                    "name": "a",
                    "discovery": {"static": [b.address]},
                    "rewrite": {"strip_prefix": "/api"},
                }
            ]
        )
    )
    for path, expected in (
        ("/api", "/"),
        ("/api/x", "/x"),
        ("/apix", "/apix"),
        ("/api?q=1", "/?q=1"),
    ):
        async with client.get(url(sc, "upstream:a", path)) as r:
            assert r.status == 200
        assert b.requests[-1]["path"] == expected, path


async def test_connect_failure_is_502_with_reason(sidecar_factory, client):
    sc = await sidecar_factory(
        config_yaml(
            [
                {
                    "name": "gone",
                    "discovery": {"static": [f"127.0.0.1:{closed_port()}"]},
                    "retries": {"attempts": 0},
                }
            ]
        )
    )
    async with client.get(url(sc, "upstream:gone", "/")) as r:
        assert r.status == 502
        assert r.headers["x-pilotfish-error"] == "connect_failure"
        assert "connect_failure" in await r.text()


@pytest.mark.parametrize(
    ("retries", "timeouts", "reason"),
    [
        ({"attempts": 0, "per_try_timeout": "150ms"}, {"total": "1s"}, "upstream_timeout"),
        ({"attempts": 0, "per_try_timeout": 0}, {"total": "200ms"}, "deadline_exceeded"),
    ],
)
async def test_timeouts_are_504_with_their_reason(
    backends, sidecar_factory, client, retries, timeouts, reason
):
    (b,) = await backends(1)
    release = hold_until(b, "late")
    upstream = {
        "name": "slow",
        "discovery": {"static": [b.address]},
        "retries": retries,
        "timeouts": timeouts,
    }
    sc = await sidecar_factory(config_yaml([upstream]))
    try:
        async with client.get(url(sc, "upstream:slow", "/")) as r:
            assert r.status == 504
            assert r.headers["x-pilotfish-error"] == reason
    finally:
        release.set()


async def test_upstream_status_passes_through_unchanged(backends, sidecar_factory, client):
    (b,) = await backends(1)

    async def teapot(request: web.Request) -> web.Response:
        return web.Response(status=418, text="short and stout", headers={"x-custom": "1"})

    b.behaviour = teapot
    sc = await sidecar_factory(config_yaml([{"name": "a", "discovery": {"static": [b.address]}}]))
    async with client.get(url(sc, "upstream:a", "/")) as r:
        assert r.status == 418
        assert r.headers["x-custom"] == "1"
        assert await r.text() == "short and stout"
        assert "x-pilotfish-error" not in r.headers


async def test_egress_routes_by_host_and_refuses_everything_else(backends, sidecar_factory):
    a, b = await backends(2)
    sc = await sidecar_factory(
        config_yaml(
            [
                {"name": "alpha", "discovery": {"static": [a.address]}},
                {"name": "beta", "hosts": ["beta.internal"], "discovery": {"static": [b.address]}},
            ],
            egress=True,
        )
    )
    host, port = sc.address("egress")
    async with aiohttp.ClientSession() as client:
        async with client.get(f"http://{host}:{port}/x", headers={"Host": "alpha"}) as r:
            assert (await r.text()).startswith(a.name)
        async with client.get(f"http://{host}:{port}/x", headers={"Host": "beta.internal:80"}) as r:
            assert (await r.text()).startswith(b.name)
        async with client.get(f"http://{host}:{port}/x", headers={"Host": "evil.example"}) as r:
            assert r.status == 404
            assert r.headers["x-pilotfish-error"] == "no_route"
    hits = a.hits + b.hits
    # An absolute-form target is routed by its authority, never by Host: an endpoint's own
    # address is no configured upstream, so it is refused and never dialled.
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"GET http://{a.address}/steal HTTP/1.1\r\nHost: alpha\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 404"), answer[:80]
    assert b"x-pilotfish-error: no_route" in answer.lower()
    assert a.hits + b.hits == hits


async def test_the_egress_listener_is_an_http_proxy_for_configured_upstreams_only(
    backends, sidecar_factory
):
    (a,) = await backends(1)
    sc = await sidecar_factory(
        config_yaml([{"name": "payments", "discovery": {"static": [a.address]}}], egress=True)
    )
    host, port = sc.address("egress")
    proxy = f"http://{host}:{port}"
    async with aiohttp.ClientSession() as client:  # as an app with HTTP_PROXY set would
        async with client.get("http://payments/charge?id=7", proxy=proxy) as r:
            assert r.status == 200
            assert await r.text() == f"{a.name} GET /charge?id=7 0"
        assert a.requests[-1]["headers"]["Host"] == "payments"
        hits = a.hits
        # Anything else is refused, and never dialled: not even an endpoint's own address.
        for target in (f"http://{a.address}/x", "http://example.com/"):
            async with client.get(target, proxy=proxy) as r:
                assert r.status == 404
                assert r.headers["x-pilotfish-error"] == "no_route"
    assert a.hits == hits


async def test_keep_alive_connections_are_reused(backends, sidecar_factory, client):
    (b,) = await backends(1)
    peers: set[tuple[str, int]] = set()

    async def who(request: web.Request) -> web.Response:
        peers.add(request.transport.get_extra_info("peername"))
        return web.Response(text="ok")

    b.behaviour = who
    sc = await sidecar_factory(config_yaml([{"name": "a", "discovery": {"static": [b.address]}}]))
    for _ in range(20):
        async with client.get(url(sc, "upstream:a", "/")) as r:
            assert r.status == 200
    assert len(peers) == 1


async def test_chunked_response_and_request_stream_through(backends, sidecar_factory, client):
    (b,) = await backends(1)

    async def chunked(request: web.Request) -> web.StreamResponse:
        received = await request.read()
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(5):
            await resp.write(f"part{i}-".encode())
        await resp.write(str(len(received)).encode())
        await resp.write_eof()
        return resp

    b.behaviour = chunked

    async def gen():
        for _ in range(10):
            yield b"x" * 1000

    sc = await sidecar_factory(config_yaml([{"name": "a", "discovery": {"static": [b.address]}}]))
    async with client.post(url(sc, "upstream:a", "/"), data=gen()) as r:
        assert r.status == 200
        assert await r.text() == "part0-part1-part2-part3-part4-10000"


async def test_pending_overflow_is_503_overflow_and_not_retried(backends, sidecar_factory, client):
    (b,) = await backends(1)
    release = hold_until(b, "held")
    sc = await sidecar_factory(
        config_yaml(
            [
                {
                    "name": "a",
                    "discovery": {"static": [b.address]},
                    "circuit_breakers": {"max_connections": 1, "max_pending": 0},
                }
            ]
        )
    )
    first = asyncio.ensure_future(client.get(url(sc, "upstream:a", "/1")))
    await asyncio.wait_for(b.entered.wait(), 5)
    async with client.get(url(sc, "upstream:a", "/2")) as r:
        assert r.status == 503
        assert r.headers["x-pilotfish-error"] == "overflow"
        assert r.headers["x-pilotfish-attempts"] == "1"
    release.set()
    resp = await asyncio.wait_for(first, 5)
    assert resp.status == 200 and await resp.text() == "held"
    resp.release()
    assert b.hits == 1


@pytest.mark.parametrize(
    ("length", "answered"),
    [(100, "502 upstream_reset"), (1024 * 1024, "cut")],
    ids=["small-body-read-whole", "large-body-streamed"],
)
async def test_an_upstream_body_that_stops_arriving_ends_after_stream_idle(
    backends, sidecar_factory, client, length, answered
):
    (b,) = await backends(1)
    release = asyncio.Event()

    async def stalls(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_length = length
        await resp.prepare(request)
        await resp.write(b"first")
        await release.wait()  # the rest never comes while the sidecar waits
        return resp

    b.behaviour = stalls
    upstream = {
        "name": "a",
        "discovery": {"static": [b.address]},
        "timeouts": {"stream_idle": "200ms"},
        "retries": {"attempts": 0},
    }
    sc = await sidecar_factory(config_yaml([upstream]))
    try:
        async with asyncio.timeout(5):  # bounds the test, far above the idle timeout
            async with client.get(url(sc, "upstream:a", "/")) as r:
                if answered == "cut":  # the head went out already: the connection is cut
                    assert r.status == 200
                    with pytest.raises(aiohttp.ClientPayloadError):
                        await r.read()
                else:  # nothing was sent yet: an answer says what happened
                    assert r.status == 502
                    assert r.headers["x-pilotfish-error"] == "upstream_reset"
                    assert "sent no body bytes for 0.2s" in await r.text()
    finally:
        release.set()


@pytest.mark.parametrize(
    ("sent", "streamed"),
    [
        # Small enough to be read whole before sending (for retries); 3 of 10 bytes come.
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc", False),
        # Above max_replay, or of unknown length: streamed upstream as it comes.
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 200000\r\n\r\n" + b"x" * 1000, True),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n"
            + b"x" * 1000,
            True,
        ),
    ],
    ids=["buffered", "long", "chunked"],
)
async def test_a_request_body_that_stops_arriving_is_answered_408_and_is_the_clients_fault(
    sent, streamed, backends, sidecar_factory
):
    (b,) = await backends(1)
    sc = await sidecar_factory(config_yaml([{"name": "a", "discovery": {"static": [b.address]}}]))
    for listener in sc.state.listeners.values():
        listener.server.body_timeout = 0.2  # the default is 60 s
    host, port = sc.address("upstream:a")
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(sent)
        answer = await asyncio.wait_for(reader.read(), 5)  # to the sidecar's close
    finally:
        writer.close()
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 408 ")
    assert b"x-pilotfish-error: request_timeout" in head
    assert b"connection: close" in head
    assert b"no request body bytes for 0.2s" in answer
    if not streamed:
        assert b.requests == []  # nothing reached the upstream
    # A streamed upload went upstream as it came, but its end is the client's doing: the
    # endpoint is not charged with a failure (a stalling client must not get it ejected).
    (state,) = sc.clusters["a"].states.values()
    assert (state.failures, state.successes, state.in_flight) == (0, 0, 0)


async def test_a_fault_of_the_sidecar_while_reading_a_response_is_not_the_endpoints(
    backends, sidecar_factory, client, monkeypatch, caplog
):
    from sidecar.transport.h1_protocol import H1Connection as UpstreamConnection

    (b,) = await backends(1)
    upstream = {"name": "a", "discovery": {"static": [b.address]}, "retries": {"attempts": 2}}
    sc = await sidecar_factory(config_yaml([upstream]))

    def broken(self: UpstreamConnection) -> None:
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(UpstreamConnection, "on_headers_complete", broken)
    async with client.get(url(sc, "upstream:a", "/")) as r:
        assert r.status == 500
        assert r.headers["x-pilotfish-error"] == "internal"
        assert r.headers["Connection"] == "close"
        assert r.headers["x-pilotfish-attempts"] == "1"  # never retried: it would meet it again
    (state,) = sc.clusters["a"].states.values()
    assert (state.failures, state.successes) == (0, 0)  # no failure charged to the endpoint
    (record,) = [r for r in caplog.records if r.name == "pilotfish.transport"]
    assert record.getMessage() == "unhandled error while reading a response"
    assert record.exc_info is not None and "a bug of ours" in str(record.exc_info[1])
    monkeypatch.undo()
    async with client.get(url(sc, "upstream:a", "/")) as r:
        assert r.status == 200
    assert (state.failures, state.successes) == (0, 1)
