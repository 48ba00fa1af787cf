"""What an operator reads about readiness: one line when ``/ready`` turns 200 or 503, never
``ready`` while it answers 503, and nothing when a reload leaves it as it was."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sidecar.app import Sidecar
from sidecar.config import load_file, load_text
from sidecar.config.schema import Config
from sidecar.events import EventBus
from sidecar.readiness import ReadinessLog, not_ready_because
from tests.discovery.consul_double import ConsulDouble, Fault, consul_double  # noqa: F401
from tests.discovery.waiting import eventually
from tests.sidecar.harness import Backend, config_yaml, url


def load_text_of(upstreams: list[dict[str, Any]], **extra: Any) -> Config:
    return load_text(config_yaml(upstreams, **extra), environ={})


def readiness_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [
        (r.levelno, r.getMessage())
        for r in caplog.records
        if r.name == "pilotfish.events" and r.getMessage().startswith("pilotfish ")
    ]


async def ready_answer(sidecar: Sidecar) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as client,
        client.get(url(sidecar, "admin", "/ready")) as r,
    ):
        return r.status, await r.text()


def test_the_reason_is_the_one_ready_answers_with() -> None:
    assert not_ready_because(started=False, draining=False, waiting=[]) == "starting"
    assert (
        not_ready_because(started=False, draining=False, waiting=["a", "b"])
        == "waiting for endpoints of: a, b"
    )
    assert not_ready_because(started=True, draining=True, waiting=["a"]) == "draining"
    assert not_ready_because(started=True, draining=False, waiting=[]) is None


async def test_each_turn_is_told_once_and_nothing_before_start_has_finished() -> None:
    bus = EventBus()
    why: list[str | None] = ["starting"]
    told = ReadinessLog(lambda: why[0], bus, ready_detail=lambda: "admin=127.0.0.1:1")
    told.check()
    assert list(bus.history) == []  # still starting: nothing to tell
    why[0] = "waiting for endpoints of: api"
    told.started()
    told.check()
    why[0] = None
    told.check()
    told.check()
    why[0] = "draining"
    told.check()
    assert [(e.kind, e.message()) for e in bus.history] == [
        ("not_ready", "pilotfish not ready: waiting for endpoints of: api"),
        ("ready", "pilotfish ready: admin=127.0.0.1:1"),
        ("draining", "pilotfish not ready: draining"),
    ]


async def test_ready_is_logged_when_ready_answers_200_and_draining_when_it_stops(
    backends, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    (b,) = await backends(1)
    sidecar = Sidecar(load_text_of([{"name": "api", "discovery": {"static": [b.address]}}]))
    await sidecar.start()
    try:
        assert await ready_answer(sidecar) == (200, "ready\n")
        (line,) = readiness_lines(caplog)
        admin = f"admin=127.0.0.1:{sidecar.address('admin')[1]}"
        assert line[0] == logging.INFO
        assert line[1].startswith("pilotfish ready: ") and admin in line[1]
    finally:
        await sidecar.stop()
    assert readiness_lines(caplog)[1:] == [(logging.INFO, "pilotfish not ready: draining")]


async def test_a_sidecar_without_endpoints_at_start_says_not_ready_then_ready_when_they_come(
    consul_double: ConsulDouble,  # noqa: F811 (the fixture imported above)
    backends,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    (b,) = await backends(1)
    consul_double.add_instance("api", b.name, port=b.port, address="127.0.0.1")
    consul_double.inject(Fault.ERROR_500)
    sidecar = Sidecar(
        load_text_of(
            [{"name": "api", "discovery": {"consul": {"service": "api", "min_interval": "0s"}}}],
            consul={"address": consul_double.address},
            discovery_timeout="50ms",
        )
    )
    await sidecar.start()
    try:
        assert await ready_answer(sidecar) == (503, "not ready: waiting for endpoints of: api\n")
        assert readiness_lines(caplog) == [
            (logging.WARNING, "pilotfish not ready: waiting for endpoints of: api")
        ]
        # The outage is an event too, and it claims no endpoints it never had.
        failing = [e for e in sidecar.events.history if e.kind == "discovery_failing"]
        assert len(failing) == 1
        assert failing[0].message().startswith("upstream api discovery failing: ")
        assert failing[0].detail.endswith("; no endpoints yet")

        consul_double.clear_faults()
        await eventually(lambda: len(readiness_lines(caplog)) == 2, timeout=10.0)
        assert readiness_lines(caplog)[1][0] == logging.INFO
        assert readiness_lines(caplog)[1][1].startswith("pilotfish ready: ")
        assert await ready_answer(sidecar) == (200, "ready\n")
        kinds = [e.kind for e in sidecar.events.history]
        assert kinds.index("discovery_recovered") < kinds.index("ready")
        recovered = next(e for e in sidecar.events.history if e.kind == "discovery_recovered")
        assert recovered.message() == "upstream api discovery recovered: 1 endpoint"
    finally:
        await sidecar.stop()


async def reload(sidecar: Sidecar) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as client,
        client.post(url(sidecar, "admin", "/reload")) as r,
    ):
        return await r.json()


async def test_reloads_tell_readiness_only_when_ready_answers_otherwise(
    tmp_path: Path, backends, caplog: pytest.LogCaptureFixture, unused_tcp_port: int
) -> None:
    (b,) = await backends(1)
    api = {"name": "api", "discovery": {"static": [b.address]}}
    # An upstream whose discovery never answers: a DNS server that is not there.
    silent = {
        "name": "lost",
        "discovery": {
            "dns_srv": {
                "name": "_lost._tcp.service.consul",
                "nameservers": [f"127.0.0.1:{unused_tcp_port}"],
                "timeout": "100ms",
            }
        },
    }
    path = tmp_path / "pilotfish.yaml"
    path.write_text(config_yaml([api], discovery_timeout="200ms"))
    sidecar = Sidecar(load_file(path, environ={}), config_path=str(path))
    await sidecar.start()
    caplog.set_level(logging.INFO)
    try:
        other = Backend("other")
        await other.start()
        try:
            extra = {"name": "extra", "discovery": {"static": [other.address]}}
            path.write_text(config_yaml([dict(api), extra], discovery_timeout="200ms"))
            assert (await reload(sidecar))["applied"]
            assert readiness_lines(caplog) == []  # ready before, during and after

            path.write_text(config_yaml([dict(api), silent], discovery_timeout="200ms"))
            assert (await reload(sidecar))["applied"]
            assert await ready_answer(sidecar) == (
                503,
                "not ready: waiting for endpoints of: lost\n",
            )
            assert readiness_lines(caplog) == [
                (logging.WARNING, "pilotfish not ready: waiting for endpoints of: lost")
            ]

            path.write_text(config_yaml([dict(api)], discovery_timeout="200ms"))
            assert (await reload(sidecar))["applied"]
            assert await ready_answer(sidecar) == (200, "ready\n")
            assert [line[1].split(":")[0] for line in readiness_lines(caplog)] == [
                "pilotfish not ready",
                "pilotfish ready",
            ]
        finally:
            await other.stop()
    finally:
        await sidecar.stop()


async def test_a_reload_that_replaces_discovery_keeps_the_endpoints_and_the_sidecar_ready(
    tmp_path: Path, backends, caplog: pytest.LogCaptureFixture, unused_tcp_port: int
) -> None:
    (b,) = await backends(1)
    path = tmp_path / "pilotfish.yaml"
    path.write_text(config_yaml([{"name": "api", "discovery": {"static": [b.address]}}]))
    sidecar = Sidecar(load_file(path, environ={}), config_path=str(path))
    await sidecar.start()
    caplog.set_level(logging.INFO)
    try:
        lost = {
            "dns_srv": {
                "name": "_api._tcp.service.consul",
                "nameservers": [f"127.0.0.1:{unused_tcp_port}"],
                "timeout": "100ms",
            }
        }
        path.write_text(config_yaml([{"name": "api", "discovery": lost}]))
        assert (await reload(sidecar))["applied"]
        await eventually(lambda: any(e.kind == "discovery_failing" for e in sidecar.events.history))
        failing = next(e for e in sidecar.events.history if e.kind == "discovery_failing")
        # What the cluster routes with is what is served: the endpoints found before.
        assert failing.detail.endswith("; keeping the last 1 endpoint")
        assert await ready_answer(sidecar) == (200, "ready\n")
        assert readiness_lines(caplog) == []
    finally:
        await sidecar.stop()
