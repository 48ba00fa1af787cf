"""Admin access: the loopback check of state-changing routes, and the warning when the admin
listener is bound where other hosts reach it."""

from __future__ import annotations

import asyncio
import logging

import pytest

from sidecar.admin import AdminHandler, AdminReply, text_reply
from sidecar.admin_access import exposure_warning, is_loopback, loopback_only
from sidecar.listener.body import BodyStream
from sidecar.listener.fields import RequestFields
from sidecar.listener.h1_server import H1Server
from sidecar.listener.request import HTTP11, DownstreamRequest
from tests.sidecar.harness import config_yaml
from tests.sidecar.test_admin import ask


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.255.0.9", True),  # all of 127.0.0.0/8
        ("::1", True),
        ("0:0:0:0:0:0:0:1", True),
        ("::ffff:127.0.0.1", True),  # IPv4-mapped: an IPv4 peer of a dual-stack socket
        ("::ffff:127.3.2.1", True),
        ("10.0.0.1", False),
        ("192.0.2.7", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:7f00:1", True),  # 127.0.0.1 mapped, written in hex
        ("fe80::1%eth0", False),
        ("2001:db8::1", False),
        ("::", False),  # unspecified: bound there, every host reaches it
        ("0.0.0.0", False),
        ("::127.0.0.1", False),  # IPv4-compatible (deprecated) is not loopback
        ("", False),  # peer unknown (a Unix socket, a closed transport)
        ("localhost", False),  # peers are addresses, never names
        ("127.0.0.1.evil", False),
    ],
)
def test_is_loopback(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def request_from(peer: str) -> DownstreamRequest:
    return DownstreamRequest(
        "POST",
        "/reload",
        RequestFields(),
        HTTP11,
        None,
        BodyStream(lambda paused: None),
        0,
        False,
        True,
        peer,
    )


async def changed(request: DownstreamRequest) -> AdminReply:
    return text_reply("changed\n")


@pytest.mark.parametrize(
    ("peer", "status"),
    [("127.0.0.1", 200), ("::1", 200), ("::ffff:127.0.0.1", 200), ("10.1.2.3", 403),
     ("::ffff:10.1.2.3", 403), ("", 403)],
)  # fmt: skip
async def test_a_loopback_only_route_answers_loopback_peers_only(peer: str, status: int) -> None:
    reply = await loopback_only(changed)(request_from(peer))
    assert reply.status == status
    assert (reply.body == b"changed\n") is (status == 200)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_a_loopback_peer_is_served_over_a_real_socket(host: str) -> None:
    server = H1Server(AdminHandler({"/change": loopback_only(changed)}))
    _, port = await server.start(host, 0)
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /change HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        raw = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    finally:
        await server.stop(1.0)
    assert raw.startswith(b"HTTP/1.1 200 ") and raw.endswith(b"changed\n")


@pytest.mark.parametrize("bound", ["127.0.0.1", "::1", "::ffff:127.0.0.1"])
def test_no_warning_for_a_loopback_admin_listener(bound: str) -> None:
    assert exposure_warning(bound, 15900, ["/config"]) is None


async def test_an_admin_listener_on_every_address_logs_one_warning_naming_what_it_serves(
    sidecar_factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pilotfish")
    upstreams = [{"name": "api", "discovery": {"static": ["127.0.0.1:1"]}}]
    sc = await sidecar_factory(
        config_yaml(upstreams).replace("address: 127.0.0.1", "address: 0.0.0.0", 1)
    )
    host, port = sc.address("admin")
    assert host == "0.0.0.0"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    (warning,) = warnings
    assert f"admin listener on 0.0.0.0:{port} is reachable from other hosts" in warning
    for route in (
        "/config (the effective config, secrets redacted)",
        "/clusters (endpoint addresses",
        "/metrics",
    ):
        assert route in warning
    assert (await ask(port, "GET", "/ready")).status == 200  # it does serve


async def test_a_loopback_admin_listener_logs_no_warning(
    sidecar_factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pilotfish")
    await sidecar_factory(config_yaml([{"name": "api", "discovery": {"static": ["127.0.0.1:1"]}}]))
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
