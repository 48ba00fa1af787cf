"""How soon a Consul outage is noticed by a watcher whose blocking read is already in flight.

A read blocked on an unchanged service ends when ``wait`` (plus up to wait/16 of jitter)
runs out; the read after it meets the fault. A 500 is recorded at once; a hung agent is cut
off by the client-side limit of ``wait + wait/16 + 1s``. These bounds are what a sidecar's
"Consul down" handling relies on, so they are checked from both sides here.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from discovery.consul import ConsulClientOptions, ConsulHealthWatcher
from tests.discovery.consul_double import ConsulDouble, Fault
from tests.discovery.waiting import eventually, running, until

WAIT = 1.0
JITTER = WAIT / 16
CLIENT_LIMIT = WAIT + JITTER + 1.0
SLACK = 0.5  # scheduling on a shared machine


@pytest.mark.parametrize(
    ("fault", "earliest", "latest"),
    [
        # the blocked read runs to wait expiry, the next one gets the 500 at once
        (Fault.ERROR_500, WAIT, WAIT + JITTER + SLACK),
        # the blocked read runs to wait expiry, the next one hangs until the client limit
        (Fault.HANG, WAIT + CLIENT_LIMIT, WAIT + JITTER + CLIENT_LIMIT + SLACK),
    ],
    ids=["500", "hang"],
)
async def test_a_fault_behind_a_blocked_read_is_recorded_within_the_wait_bounds(
    consul_double: ConsulDouble, fault: Fault, earliest: float, latest: float
) -> None:
    consul_double.add_instance("api", "api-1", address="10.0.0.1", port=80)
    options = ConsulClientOptions(address=consul_double.address)
    source = ConsulHealthWatcher(
        options, service="api", wait=WAIT, min_interval=0.0, rng=random.Random(3)
    )
    loop = asyncio.get_running_loop()
    async with running(source):
        # a few snapshots first, each taken by a blocking read that a change woke up
        for n in range(2, 5):
            await consul_double.wait_requests(n)
            consul_double.add_instance("api", f"api-{n}", address=f"10.0.0.{n}", port=80)
            await until(source.watch, lambda s, n=n: len(s) == n)
        # reads 2-4 were woken by a change each; read 5 is now blocked on an unchanged index
        await consul_double.wait_requests(5)
        blocked_at = loop.time()
        good = source.watch.value
        consul_double.inject(fault)
        await eventually(lambda: source.watch.errors >= 1, timeout=latest + 1.0)
        noticed = loop.time() - blocked_at
        assert source.watch.value is good
        consul_double.clear_faults()
    blocked, failed = consul_double.health_requests("api")[4:6]
    assert blocked.param("wait") == failed.param("wait") == "1s"
    assert failed.param("index") == blocked.param("index")  # the blocked read changed nothing
    assert earliest - 0.05 <= noticed <= latest
