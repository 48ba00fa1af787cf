"""The admin listener over real sockets: routes, content types, HEAD, 404/405, failures."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime

import pytest
import yaml
from multidict import CIMultiDict
from prometheus_client import CONTENT_TYPE_LATEST

from sidecar.admin import AdminHandler, AdminReply, text_reply
from sidecar.app import Sidecar
from sidecar.listener.h1_server import H1Server
from sidecar.listener.request import DownstreamRequest
from tests.sidecar.harness import config_yaml

TEXT = "text/plain; charset=utf-8"
JSON = "application/json; charset=utf-8"
HTML = "text/html; charset=utf-8"


class Reply:
    def __init__(self, raw: bytes) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers: CIMultiDict[str] = CIMultiDict(
            (name, value.strip()) for name, _, value in (line.partition(":") for line in lines)
        )


async def ask(port: int, method: str, target: str) -> Reply:
    """One request on its own connection; the answer read to the server's close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {target} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n".encode())
    raw = await reader.read()
    writer.close()
    return Reply(raw)


def admin_port(sidecar: Sidecar) -> int:
    return sidecar.address("admin")[1]


@pytest.fixture
async def sidecar(sidecar_factory) -> Sidecar:
    return await sidecar_factory(
        config_yaml([{"name": "api", "discovery": {"static": ["127.0.0.1:1"]}}])
    )


def is_plain_json_dumps(body: bytes) -> bool:
    return body == json.dumps(json.loads(body)).encode()


@pytest.mark.parametrize(
    ("path", "content_type", "check"),
    [
        ("/live", TEXT, lambda body: body == b"live\n"),
        ("/ready", TEXT, lambda body: body == b"ready\n"),
        ("/clusters", JSON, lambda body: json.loads(body)["clusters"][0]["name"] == "api"),
        ("/config", JSON, lambda body: json.loads(body)["config"]["upstreams"][0]["name"] == "api"),
        (
            "/stats",
            JSON,
            lambda body: set(json.loads(body)) == {"time", "listeners", "endpoints", "tasks"},
        ),
        ("/", HTML, lambda body: body.lstrip().lower().startswith(b"<!doctype html")),
        ("/metrics", CONTENT_TYPE_LATEST, lambda body: b"# TYPE " in body),
    ],
)
async def test_each_route_answers_get_with_its_content_type(sidecar, path, content_type, check):
    reply = await ask(admin_port(sidecar), "GET", path)
    assert reply.status == 200
    assert reply.headers["Content-Type"] == content_type
    assert int(reply.headers["Content-Length"]) == len(reply.body)
    assert check(reply.body)
    if content_type == JSON:
        assert is_plain_json_dumps(reply.body)


async def test_the_page_is_never_cached_and_data_routes_say_nothing_about_caching(sidecar):
    port = admin_port(sidecar)
    assert (await ask(port, "GET", "/")).headers["Cache-Control"] == "no-store"
    assert "Cache-Control" not in (await ask(port, "GET", "/clusters")).headers


@pytest.mark.parametrize(("method", "path"), [("GET", "/ready"), ("GET", "/nope"), ("POST", "/")])
async def test_answers_are_dated(sidecar, method, path):
    # RFC 9110 §6.6.1: an origin server with a clock dates its 2xx, 3xx and 4xx answers.
    before = time.time()
    reply = await ask(admin_port(sidecar), method, path)
    dated = parsedate_to_datetime(reply.headers["Date"]).timestamp()
    assert int(before) <= dated <= time.time()
    assert reply.headers["Date"].endswith(" GMT")


@pytest.mark.parametrize("path", ["/live", "/ready", "/config", "/"])
async def test_head_answers_like_get_without_a_body(sidecar, path):
    port = admin_port(sidecar)
    get = await ask(port, "GET", path)
    head = await ask(port, "HEAD", path)
    assert head.status == get.status == 200
    assert head.body == b""
    assert head.headers["Content-Type"] == get.headers["Content-Type"]
    assert int(head.headers["Content-Length"]) == len(get.body) > 0


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
async def test_an_unknown_path_is_404(sidecar, method):
    reply = await ask(admin_port(sidecar), method, "/nope")
    assert reply.status == 404
    assert reply.headers["Content-Type"] == TEXT
    assert reply.body == (b"" if method == "HEAD" else b"404: Not Found")


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/ready"), ("PUT", "/config"), ("DELETE", "/"), ("PATCH", "/live")],
)
async def test_another_method_on_a_known_path_is_405_with_allow(sidecar, method, path):
    reply = await ask(admin_port(sidecar), method, path)
    assert reply.status == 405
    assert reply.headers["Allow"] == "GET, HEAD"
    assert reply.headers["Content-Type"] == TEXT
    assert reply.body == b"405: Method Not Allowed"


@pytest.mark.parametrize(
    ("target", "status", "body"),
    [
        ("/live?verbose=1", 200, b"live\n"),
        ("/ready?", 200, b"ready\n"),
        ("/nope?path=/live", 404, b"404: Not Found"),
        ("/live/", 404, b"404: Not Found"),
    ],
)
async def test_the_query_string_plays_no_part_in_routing(sidecar, target, status, body):
    reply = await ask(admin_port(sidecar), "GET", target)
    assert (reply.status, reply.body) == (status, body)


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port bound but not listening: every connection to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def test_ready_is_503_with_the_clusters_still_waiting_for_endpoints(
    sidecar_factory, refused_port
):
    text = yaml.safe_dump(
        {
            "service": {"name": "orders", "port": 1},
            "listeners": {"admin": {"address": "127.0.0.1", "port": 0}},
            "consul": {"address": f"127.0.0.1:{refused_port}"},
            "upstreams": [
                {"name": "api", "listen": "127.0.0.1:0", "discovery": {"consul": {"service": "a"}}}
            ],
            "discovery_timeout": "50ms",
            "access_log": {"enabled": False},
            "tracing": {"enabled": False},
        }
    )
    sc = await sidecar_factory(text)
    reply = await ask(admin_port(sc), "GET", "/ready")
    assert reply.status == 503
    assert reply.headers["Content-Type"] == TEXT
    assert reply.body == b"not ready: waiting for endpoints of: api\n"
    assert (await ask(admin_port(sc), "GET", "/live")).status == 200


async def test_a_failing_route_is_logged_and_answered_500_and_the_listener_keeps_serving(
    caplog: pytest.LogCaptureFixture,
):
    async def boom(request: DownstreamRequest) -> AdminReply:
        raise RuntimeError("broken view")

    async def live(request: DownstreamRequest) -> AdminReply:
        return text_reply("live\n")

    server = H1Server(AdminHandler({"/boom": boom, "/live": live}))
    _, port = await server.start("127.0.0.1", 0)
    try:
        with caplog.at_level(logging.ERROR, logger="pilotfish.admin"):
            failed = await ask(port, "GET", "/boom")
        assert failed.status == 500
        assert failed.headers["Content-Type"] == TEXT
        assert failed.body == b"500: Internal Server Error"
        logged = [r for r in caplog.records if r.name == "pilotfish.admin"]
        assert [str(r.exc_info[1]) for r in logged if r.exc_info] == ["broken view"]
        assert (await ask(port, "GET", "/live")).body == b"live\n"
    finally:
        await server.stop(1.0)
