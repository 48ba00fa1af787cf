"""Ring hash end to end: seven instances in Consul, 600 keys by header through a sidecar, an
eighth instance registers, and only the keys the newcomer takes change endpoint."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
import yaml
from aiohttp import web

from resilience.hashring import HashRing
from tests.discovery.consul_double import ConsulDouble, consul_double  # noqa: F401
from tests.discovery.waiting import until
from tests.sidecar.harness import Backend, url

KEYS = [f"user-{i}" for i in range(600)]
HOSTS = [f"127.0.0.{21 + i}" for i in range(8)]
# The endpoints' names (host:port) place them on the ring, and with 600 keys the share a
# newcomer takes varies by about 1.4 points from one set of names to another; fixed names
# make the outcome one number. The first free port is used; with each of these the eighth
# instance takes 75, 74, 70 or 70 of the 600 keys (1/8 is 75).
PORTS = (24109, 28080, 19090, 27070)


class HostBackend(Backend):
    """A ``Backend`` on a loopback address of its own (Linux answers all of 127.0.0.0/8)."""

    def __init__(self, name: str, host: str) -> None:
        super().__init__(name)
        self.host = host

    async def start(self, port: int = 0) -> HostBackend:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.host, port).start()
        self.port = port
        return self

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def free_everywhere(port: int) -> bool:
    for host in HOSTS:
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                return False
    return True


@pytest.fixture
async def instances() -> AsyncIterator[list[HostBackend]]:
    port = next((p for p in PORTS if free_everywhere(p)), None)
    assert port is not None, f"none of ports {PORTS} is free on {HOSTS[0]}..{HOSTS[-1]}"
    started = [await HostBackend(f"api-{i}", host).start(port) for i, host in enumerate(HOSTS)]
    yield started
    for backend in started:
        await backend.stop()


async def served(client: aiohttp.ClientSession, target: str) -> dict[str, str]:
    """The backend that answers each key (a few requests in flight at a time)."""
    gate = asyncio.Semaphore(8)

    async def one(key: str) -> tuple[str, str]:
        async with gate, client.get(target, headers={"x-user": key}) as reply:
            assert reply.status == 200, await reply.text()
            return key, reply.headers["x-backend"]

    async with asyncio.timeout(30):
        return dict(await asyncio.gather(*map(one, KEYS)))


async def test_an_eighth_instance_takes_only_its_own_keys(
    consul_double: ConsulDouble,  # noqa: F811 (the fixture imported above)
    instances: list[HostBackend],
    sidecar_factory,
    client: aiohttp.ClientSession,
) -> None:
    *seven, eighth = instances
    for backend in seven:
        consul_double.add_instance("api", backend.name, port=backend.port, address=backend.host)
    sc = await sidecar_factory(
        yaml.safe_dump(
            {
                "service": {"name": "orders", "port": 1},
                "listeners": {"admin": {"address": "127.0.0.1", "port": 0}},
                "consul": {"address": consul_double.address},
                "upstreams": [
                    {
                        "name": "api",
                        "listen": "127.0.0.1:0",
                        "discovery": {
                            "consul": {"service": "api", "wait": "2s", "min_interval": 0}
                        },
                        "balancer": {"policy": "ring_hash", "hash_on": "header:x-user"},
                    }
                ],
                "access_log": {"enabled": False},
                "tracing": {"enabled": False},
            }
        )
    )
    target = url(sc, "upstream:api", "/")
    watch = sc.sources["api"].watch
    await until(watch, lambda s: len(s) == 7)
    before = await served(client, target)
    assert set(before.values()) == {b.name for b in seven}

    consul_double.add_instance("api", eighth.name, port=eighth.port, address=eighth.host)
    await until(watch, lambda s: len(s) == 8, timeout=5.0)
    after = await served(client, target)

    changed = {key for key in KEYS if after[key] != before[key]}
    assert {after[key] for key in changed} == {eighth.name}
    assert changed == {key for key in KEYS if after[key] == eighth.name}
    assert 0 < len(changed) <= (1 / 8 + 0.02) * len(KEYS)
    # and they are exactly the keys the ring of these eight names gives the newcomer
    ring = HashRing([(b.address, 1) for b in instances])
    assert changed == {key for key in KEYS if ring.primary(key) == eighth.address}
