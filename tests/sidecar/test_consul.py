"""The sidecar against the Consul HTTP double: routing follows Consul, the local service is
registered and deregistered, the watch loop keeps the configured pace, and Consul being down
costs no request."""

from __future__ import annotations

import asyncio
import random
import socket

import pytest
import yaml

from tests.discovery.consul_double import ConsulDouble, Fault, consul_double  # noqa: F401
from tests.discovery.waiting import until
from tests.sidecar.harness import url
from tests.sidecar.traffic import steady_gets

OUTAGE_REQUESTS = 250
OUTAGE_RATE = 50.0  # requests per second: the outage lasts about five seconds
READY_EVERY = 25  # one admin /ready check per this many requests
# Equal-jitter backoff from 0.1 s: a watcher failing for ~5 s has failed at most seven times,
# so its next read comes at most 6.4 s after the fault clears.
RECOVERY_WITHIN = 8.0


def consul_config(consul: ConsulDouble, *, wait: str, min_interval: str = "0s") -> str:
    return yaml.safe_dump(
        {
            "service": {"name": "orders", "port": 1},
            "listeners": {"admin": {"address": "127.0.0.1", "port": 0}},
            "consul": {"address": consul.address},
            "upstreams": [
                {
                    "name": "api",
                    "listen": "127.0.0.1:0",
                    "discovery": {
                        "consul": {"service": "api", "wait": wait, "min_interval": min_interval}
                    },
                }
            ],
            "access_log": {"enabled": False},
            "tracing": {"enabled": False},
        }
    )


async def _get_backends(client, target: str, n: int) -> set[str]:
    seen = set()
    for _ in range(n):
        async with client.get(target) as r:
            assert r.status == 200, await r.text()
            seen.add((await r.text()).split()[0])
    return seen


async def test_routing_follows_consul_and_the_service_registers(
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


@pytest.mark.parametrize(
    ("min_interval", "seen_at_once"),
    [
        ("0s", [True, True, True]),
        # a burst of two answers (the first snapshot and change 1), then one per 30 s
        ("30s", [True, True, False]),
    ],
)
async def test_the_configured_min_interval_paces_the_watch_loop(
    consul_double: ConsulDouble,  # noqa: F811 (the fixture imported above)
    sidecar_factory,
    min_interval: str,
    seen_at_once: list[bool],
):
    consul_double.add_instance("api", "api-0", port=1000, address="127.0.0.1")
    sc = await sidecar_factory(consul_config(consul_double, wait="2s", min_interval=min_interval))
    watch = sc.sources["api"].watch
    seen = []
    for n in range(1, 4):
        consul_double.add_instance("api", f"api-{n}", port=1000 + n, address="127.0.0.1")
        try:
            await until(watch, lambda s, n=n: len(s) == n + 1, timeout=1.0)
            seen.append(True)
        except TimeoutError:
            seen.append(False)
    assert seen == seen_at_once


@pytest.mark.parametrize("fault", [Fault.ERROR_500, Fault.HANG], ids=["500", "hang"])
async def test_consul_down_costs_no_request_and_keeps_the_sidecar_ready(
    consul_double: ConsulDouble,  # noqa: F811 (the fixture imported above)
    backends,
    sidecar_factory,
    client,
    fault: Fault,
):
    b0, b1, late = await backends(3)
    consul_double.add_instance("api", b0.name, port=b0.port, address="127.0.0.1")
    # wait 1s: a hung read is given up after 1 + 1/16 + 1 s, well inside the outage
    sc = await sidecar_factory(consul_config(consul_double, wait="1s"), rng=random.Random(11))
    target = url(sc, "upstream:api", "/")
    watch = sc.sources["api"].watch
    # a second snapshot, so the loop has spent its burst before the outage begins
    consul_double.add_instance("api", b1.name, port=b1.port, address="127.0.0.1")
    await until(watch, lambda s: len(s) == 2)
    assert await _get_backends(client, target, 4) == {b0.name, b1.name}
    await consul_double.wait_requests(3)  # a blocking read is in flight
    errors_before = watch.errors
    ready: list[int] = []

    async def check_ready() -> None:
        async with client.get(url(sc, "admin", "/ready")) as r:
            ready.append(r.status)

    async def register_late() -> None:
        consul_double.add_instance("api", late.name, port=late.port, address="127.0.0.1")

    hooks = {seq: check_ready for seq in range(0, OUTAGE_REQUESTS, READY_EVERY)}
    hooks[OUTAGE_REQUESTS // 2 + 1] = register_late
    consul_double.inject(fault)
    traffic = await steady_gets(
        client, target, total=OUTAGE_REQUESTS, rate=OUTAGE_RATE, hooks=hooks
    )

    assert traffic.failed == []
    assert len(traffic.replies) == OUTAGE_REQUESTS
    assert ready == [200] * (OUTAGE_REQUESTS // READY_EVERY)
    assert watch.errors > errors_before and watch.failing
    # the last good snapshot kept serving; Consul's news could not get through
    assert set(traffic.served()) == {b0.name, b1.name}
    assert late.hits == 0

    consul_double.clear_faults()
    await until(
        watch, lambda s: late.address in {e.id for e in s.endpoints}, timeout=RECOVERY_WITHIN
    )
    assert not watch.failing
    assert await _get_backends(client, target, 12) == {b0.name, b1.name, late.name}
