"""Routing follows a churning Consul service within a second, with the default rate limit.

The case that used to lag: three instances registered 2 s apart while traffic flows (the
third waited for the rate limiter's next token, up to ``min_interval`` = 15 s then), and an
instance registered after a snapshot restore rewound Consul's index. "Routed" means the new
backend received a request through the sidecar.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import yaml

from tests.discovery.consul_double import ConsulDouble, consul_double  # noqa: F401
from tests.discovery.test_consul_follow import blocked_on_current_index
from tests.sidecar.harness import Backend, url

ROUTED_WITHIN = 1.0  # the promise of docs/discovery.md
GAP = 2.0  # between registrations: the spacing that was followed 8.9 s late
PAUSE = 0.005  # between two requests of the traffic loop (about 200 requests a second)


def default_consul_config(consul: ConsulDouble) -> str:
    # wait and min_interval are left at their defaults: they are what is checked
    return yaml.safe_dump(
        {
            "service": {"name": "orders", "port": 1},
            "listeners": {"admin": {"address": "127.0.0.1", "port": 0}},
            "consul": {"address": consul.address},
            "upstreams": [
                {
                    "name": "web",
                    "listen": "127.0.0.1:0",
                    "discovery": {"consul": {"service": "web"}},
                }
            ],
            "access_log": {"enabled": False},
            "tracing": {"enabled": False},
        }
    )


async def keep_sending(client: aiohttp.ClientSession, target: str) -> None:
    while True:
        async with client.get(target) as r:
            await r.read()
        await asyncio.sleep(PAUSE)  # pacing the load, not a synchronisation


async def routed_after(consul: ConsulDouble, backend: Backend) -> float:
    """Seconds from registering ``backend`` in Consul to its first request."""
    loop = asyncio.get_running_loop()
    made = loop.time()
    consul.add_instance("web", backend.name, port=backend.port, address="127.0.0.1")
    async with asyncio.timeout(ROUTED_WITHIN):
        await backend.entered.wait()
    return loop.time() - made


async def test_new_instances_get_requests_within_a_second_also_after_an_index_reset(
    consul_double: ConsulDouble,  # noqa: F811 (the fixture imported above)
    backends,
    sidecar_factory,
    client,
):
    first, *later, after_reset = await backends(5)
    consul_double.add_instance("web", first.name, port=first.port, address="127.0.0.1")
    sc = await sidecar_factory(default_consul_config(consul_double))
    traffic = asyncio.create_task(keep_sending(client, url(sc, "upstream:web")))
    try:
        async with asyncio.timeout(ROUTED_WITHIN):
            await first.entered.wait()
        lags = []
        for n, backend in enumerate(later):
            if n:
                await asyncio.sleep(GAP)  # the scenario's spacing, not a synchronisation
            lags.append(await routed_after(consul_double, backend))
        seen = len(await blocked_on_current_index(consul_double))
        consul_double.rewind_index(3)
        await consul_double.wait_requests(seen + 2)  # the loop restarted on the old index
        lags.append(await routed_after(consul_double, after_reset))
    finally:
        traffic.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await traffic
    assert len(lags) == 4 and max(lags) < ROUTED_WITHIN, lags
