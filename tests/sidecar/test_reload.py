"""Live reconfiguration: a reload changes only what differs, under load, losing nothing.

The sidecar runs from a config file; a test rewrites the file and asks for a reload
(``POST /reload`` from 127.0.0.1, as an operator's ``curl`` would), then checks what
traffic, the cluster state and the backends saw.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from sidecar.app import Sidecar
from sidecar.config import load_file
from tests.discovery.consul_double import consul_double  # noqa: F401 (a fixture)
from tests.sidecar.harness import Backend, config_yaml, url
from tests.sidecar.traffic import steady_gets


class Counted(Backend):
    """A backend that tells the connections its requests came on apart."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.peers: set[tuple[str, int]] = set()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        self.peers.add(request.transport.get_extra_info("peername"))
        return await super()._handle(request)

    @property
    def connections(self) -> int:
        return len(self.peers)


@pytest.fixture
async def backends() -> AsyncIterator[dict[str, Counted]]:
    started = {name: await Counted(name).start() for name in ("a1", "a2", "b1", "c1")}
    yield started
    for b in started.values():
        await b.stop()


def doc(backends: dict[str, Counted], **changes: Any) -> dict[str, Any]:
    upstreams = [
        {
            "name": "alpha",
            "discovery": {"static": [backends["a1"].address, backends["a2"].address]},
        },
        {
            "name": "beta",
            "discovery": {"static": [backends["b1"].address]},
            "retries": {"attempts": 0},
        },
    ]
    for name, change in changes.items():
        for up in upstreams:
            if up["name"] == name:
                up.update(change)
    if "gamma" in changes:
        upstreams.append({"name": "gamma", "discovery": {"static": [backends["c1"].address]}})
    return yaml.safe_load(config_yaml(upstreams, egress=True))


async def running(tmp_path: Path, document: dict[str, Any]) -> tuple[Sidecar, Path]:
    path = tmp_path / "pilotfish.yaml"
    path.write_text(yaml.safe_dump(document))
    sidecar = Sidecar(load_file(path, environ={}), config_path=str(path))
    await sidecar.start()
    return sidecar, path


async def reload(client: aiohttp.ClientSession, sidecar: Sidecar) -> dict[str, Any]:
    async with client.post(url(sidecar, "admin", "/reload")) as r:
        answer = await r.json()
        assert r.status in (200, 422), answer
        return answer


def fail_once(backend: Backend) -> None:
    """Answer 503 the first time a request id is seen (to show retries), else as usual."""
    seen: set[str] = set()

    async def behaviour(request: web.Request) -> web.Response:
        key = request.headers.get("x-fail-once")
        if key and key not in seen:
            seen.add(key)
            return web.Response(status=503, text="once")
        return web.Response(text=backend.name, headers={"x-backend": backend.name})

    backend.behaviour = behaviour


def slow(backend: Backend, seconds: float) -> None:
    async def behaviour(request: web.Request) -> web.Response:
        await asyncio.sleep(seconds)  # the backend's own latency
        return web.Response(text=backend.name, headers={"x-backend": backend.name})

    backend.behaviour = behaviour


async def test_a_reload_under_load_adds_removes_and_changes_without_a_failed_request(
    tmp_path: Path, backends: dict[str, Counted]
):
    for name in ("a1", "c1"):
        backends[name].behaviour = None
    slow(backends["a2"], 0.1)  # requests are in flight on it when it is removed
    fail_once(backends["b1"])
    sidecar, path = await running(tmp_path, doc(backends))
    try:
        async with aiohttp.ClientSession() as client:
            beta = url(sidecar, "egress", "/")
            headers = {"Host": "beta", "x-fail-once": "before"}
            async with client.get(beta, headers=headers) as r:
                assert r.status == 503  # no retries yet
            path.write_text(
                yaml.safe_dump(
                    doc(
                        backends,
                        alpha={"discovery": {"static": [backends["a1"].address]}},
                        beta={"retries": {"attempts": 2, "retriable_status_codes": [503]}},
                        gamma={},
                    )
                )
            )
            loop = asyncio.get_running_loop()
            reloaded_at: list[float] = []

            async def reload_now() -> None:
                answer = await reload(client, sidecar)
                reloaded_at.append(loop.time())
                assert answer["applied"], answer
                summary = answer["summary"]
                assert "upstream alpha: discovery changed; endpoints +0 -1" in summary
                assert "upstream beta: retries changed" in summary
                assert "upstream gamma added" in summary

            egress = url(sidecar, "egress", "/")
            client_alpha = aiohttp.ClientSession(headers={"Host": "alpha"})
            client_beta = aiohttp.ClientSession(headers={"Host": "beta"})
            async with client_alpha, client_beta:
                alpha, beta_traffic = await asyncio.gather(
                    steady_gets(client_alpha, egress, total=600, rate=100, hooks={300: reload_now}),
                    steady_gets(client_beta, egress, total=600, rate=100),
                )
            assert alpha.failed == [] and beta_traffic.failed == []
            assert alpha.served(first=450)["a2"] == 0  # gone once the reload is in place
            async with client.get(egress, headers={"Host": "gamma"}) as r:
                assert r.status == 200 and await r.text() == "c1 GET / 0"
            assert loop.time() - reloaded_at[0] < 10  # answered long before: see below
            headers = {"Host": "beta", "x-fail-once": "after"}
            async with client.get(beta, headers=headers) as r:
                assert r.status == 200  # the new retry policy retried the 503
                assert r.headers["x-pilotfish-attempts"] == "2"
    finally:
        await sidecar.stop()


async def test_a_new_upstream_answers_within_a_second_of_the_reload(
    tmp_path: Path, backends: dict[str, Counted]
):
    sidecar, path = await running(tmp_path, doc(backends))
    try:
        async with aiohttp.ClientSession() as client:
            path.write_text(yaml.safe_dump(doc(backends, gamma={})))
            loop = asyncio.get_running_loop()
            asked = loop.time()
            answer = await reload(client, sidecar)
            assert answer["applied"] and answer["version"] == 2
            async with client.get(url(sidecar, "egress", "/"), headers={"Host": "gamma"}) as r:
                assert r.status == 200
            assert loop.time() - asked < 1.0
    finally:
        await sidecar.stop()


async def test_state_and_pooled_connections_survive_a_reload_that_does_not_touch_them(
    tmp_path: Path, backends: dict[str, Counted]
):
    async def fails(request: web.Request) -> web.Response:
        return web.Response(status=500)

    backends["a2"].behaviour = fails
    document = doc(
        backends,
        alpha={"outlier_detection": {"consecutive_5xx": 3, "base_ejection_time": "60s"}},
    )
    sidecar, path = await running(tmp_path, document)
    try:
        alpha = sidecar.clusters["alpha"]
        async with aiohttp.ClientSession() as client:
            egress = url(sidecar, "egress", "/")
            for _ in range(6):  # three of them reach a2, which is then ejected
                async with client.get(egress, headers={"Host": "alpha"}) as r:
                    await r.read()
            assert alpha.outlier is not None and alpha.outlier.is_ejected(backends["a2"].address)
            async with client.get(egress, headers={"Host": "beta"}) as r:
                assert r.status == 200
            before = backends["b1"].connections
            # A change to beta's retries and alpha's retries, not to alpha's outlier policy.
            document["upstreams"][0]["retries"] = {"attempts": 1}
            document["upstreams"][1]["retries"] = {"attempts": 1}
            path.write_text(yaml.safe_dump(document))
            assert (await reload(client, sidecar))["applied"]
            assert sidecar.clusters["alpha"] is alpha
            assert alpha.outlier.is_ejected(backends["a2"].address)  # still ejected
            for _ in range(5):
                async with client.get(egress, headers={"Host": "beta"}) as r:
                    assert r.status == 200
            assert backends["b1"].connections == before  # the pooled connection, reused
    finally:
        await sidecar.stop()


async def test_an_invalid_file_is_refused_by_path_and_nothing_changes(
    tmp_path: Path, backends: dict[str, Counted], caplog: pytest.LogCaptureFixture
):
    sidecar, path = await running(tmp_path, doc(backends))
    try:
        async with aiohttp.ClientSession() as client:
            async with client.get(url(sidecar, "admin", "/config")) as r:
                before = await r.json()
            broken = doc(backends, beta={"retries": {"attempts": -1}})
            broken["upstreams"][0]["balancer"] = {"policy": "fastest"}
            path.write_text(yaml.safe_dump(broken))
            caplog.set_level(logging.INFO)
            answer = await reload(client, sidecar)
            assert not answer["applied"]
            errors = [r.getMessage() for r in caplog.records if r.name == "pilotfish.reload"]
            assert any("upstreams[1].retries.attempts: must be >= 0, got -1" in e for e in errors)
            assert any(e.startswith("reload: upstreams[0].balancer.policy: ") for e in errors)
            async with client.get(url(sidecar, "admin", "/config")) as r:
                assert await r.json() == before
            async with client.get(url(sidecar, "admin", "/metrics")) as r:
                metrics = await r.text()
            assert 'pilotfish_config_reloads_total{result="refused"} 1.0' in metrics
            assert "pilotfish_config_last_reload_successful 0.0" in metrics
            async with client.get(url(sidecar, "egress", "/"), headers={"Host": "alpha"}) as r:
                assert r.status == 200  # still serving, on the old configuration
    finally:
        await sidecar.stop()


async def test_reloads_asked_for_while_one_runs_are_coalesced_and_the_last_file_wins(
    tmp_path: Path, backends: dict[str, Counted]
):
    sidecar, path = await running(tmp_path, doc(backends))
    try:
        applied: list[str] = []
        real = sidecar.apply

        async def slow_apply(config: Any) -> str:
            applied.append(config.upstreams[-1].name)
            await asyncio.sleep(0.1)  # an apply that takes a while
            return await real(config)

        assert sidecar.reloader is not None
        sidecar.reloader._apply = slow_apply  # type: ignore[method-assign]
        first = sidecar.reloader.request()
        await asyncio.sleep(0)  # the first run has read the file
        path.write_text(yaml.safe_dump(doc(backends, gamma={})))
        later = [sidecar.reloader.request() for _ in range(5)]
        results = await asyncio.gather(first, *later)
        assert all(r.ok for r in results)
        assert applied == ["beta", "gamma"]  # two runs for six requests; the last file won
        assert "gamma" in sidecar.clusters
    finally:
        await sidecar.stop()


async def test_the_registration_follows_a_changed_service_block(
    tmp_path: Path,
    backends: dict[str, Counted],
    consul_double: Any,  # noqa: F811 (the fixture imported above)
):
    document = doc(backends)
    document["listeners"]["inbound"] = {"address": "127.0.0.1", "port": 0}
    document["service"].update({"register": True, "id": "orders-1", "check": {"ttl": "30s"}})
    document["consul"] = {"address": consul_double.address}
    sidecar, path = await running(tmp_path, document)
    try:
        assert consul_double.local_service("orders-1") is not None
        document["service"]["id"] = "orders-2"
        path.write_text(yaml.safe_dump(document))
        async with aiohttp.ClientSession() as client:
            assert (await reload(client, sidecar))["applied"]
        assert consul_double.local_service("orders-1") is None
        assert consul_double.local_service("orders-2") is not None
    finally:
        await sidecar.stop()


async def test_events_of_a_reload_are_listed_on_the_admin_listener(
    tmp_path: Path, backends: dict[str, Counted]
):
    sidecar, path = await running(tmp_path, doc(backends))
    try:
        path.write_text(yaml.safe_dump(doc(backends, gamma={})))
        async with aiohttp.ClientSession() as client:
            await reload(client, sidecar)
            async with client.get(url(sidecar, "admin", "/events")) as r:
                events = (await r.json())["events"]
        kinds = [(e["kind"], e["cluster"]) for e in events]
        assert ("cluster_added", "gamma") in kinds
        assert kinds[-1] == ("reload_applied", None)
        assert json.dumps(events)  # plain JSON
    finally:
        await sidecar.stop()
