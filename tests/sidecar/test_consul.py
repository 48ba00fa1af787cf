"""The sidecar against the Consul HTTP double: routing follows Consul, and the local
service is registered and deregistered."""

from __future__ import annotations

import asyncio
import socket

import yaml

from tests.discovery.consul_double import ConsulDouble, consul_double  # noqa: F401 (fixture)
from tests.sidecar.harness import url


async def _get_backends(client, target: str, n: int) -> set[str]:
    seen = set()
    for _ in range(n):
        async with client.get(target) as r:
            assert r.status == 200, await r.text()
            seen.add((await r.text()).split()[0])
    return seen


async def test_routing_follows_consul_survives_an_outage_and_registers(
    consul_double: ConsulDouble,  # noqa: F811 (the fixture imported above)
    backends,
    sidecar_factory,
    client,
):
    b0, b1, b2 = await backends(3)
    for b in (b0, b1):
        consul_double.add_instance("api", b.name, port=b.port, address="127.0.0.1")
    sc = await sidecar_factory(
        yaml.safe_dump(
            {
                "service": {
                    "name": "orders",
                    "port": b0.port,
                    "register": True,
                    "check": {"ttl": "10s"},
                },
                "listeners": {
                    "admin": {"address": "127.0.0.1", "port": 0},
                    "inbound": {"address": "127.0.0.1", "port": 0},
                },
                "consul": {"address": consul_double.address},
                "upstreams": [
                    {
                        "name": "api",
                        "listen": "127.0.0.1:0",
                        "discovery": {
                            "consul": {"service": "api", "wait": "2s", "min_interval": 0}
                        },
                    }
                ],
                "access_log": {"enabled": False},
                "tracing": {"enabled": False},
            }
        )
    )
    target = url(sc, "upstream:api", "/")
    watch = sc.sources["api"].watch
    assert await _get_backends(client, target, 10) == {b0.name, b1.name}

    # Registered at the inbound listener, under <name>-<hostname>-<port>.
    _, inbound_port = sc.address("inbound")
    service_id = f"orders-{socket.gethostname()}-{inbound_port}"
    registered = consul_double.local_service(service_id)
    assert registered is not None and registered.port == inbound_port

    changed = asyncio.ensure_future(watch.wait_changed())
    consul_double.add_instance("api", b2.name, port=b2.port, address="127.0.0.1")
    await asyncio.wait_for(changed, 1.0)
    assert await _get_backends(client, target, 12) == {b0.name, b1.name, b2.name}

    changed = asyncio.ensure_future(watch.wait_changed())
    consul_double.remove_instance(b0.name)
    await asyncio.wait_for(changed, 1.0)
    assert await _get_backends(client, target, 12) == {b1.name, b2.name}

    # Shutdown: maintenance on, then deregistered.
    await sc.stop()
    assert consul_double.local_service(service_id) is None
    paths = [r.path for r in consul_double.requests]
    maint = max(i for i, p in enumerate(paths) if "/v1/agent/service/maintenance/" in p)
    dereg = max(i for i, p in enumerate(paths) if "/v1/agent/service/deregister/" in p)
    assert maint < dereg
