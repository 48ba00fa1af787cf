"""A watcher with the default rate limit keeps up with Consul and still never spins.

Every change is read within a second of being made: changes in quick succession (the burst
of two spent long ago), and changes right after a snapshot restore rewound the index. Under
constant churn the loop reads at most 2 + t / ``min_interval`` times in t seconds.
"""

from __future__ import annotations

import asyncio
import random

from discovery.consul import ConsulClientOptions, ConsulHealthWatcher
from discovery.consul_watch import MIN_INTERVAL
from tests.discovery.consul_double import ConsulDouble, RecordedRequest
from tests.discovery.waiting import running, until

FOLLOW_WITHIN = 1.0  # the promise of docs/discovery.md
CHURN_FOR = 2.0
CHURN_EVERY = 0.005


def default_watcher(double: ConsulDouble) -> ConsulHealthWatcher:
    options = ConsulClientOptions(address=double.address)
    # min_interval and the backoff are left at their defaults: they are what is checked
    return ConsulHealthWatcher(options, service="web", wait=5.0, rng=random.Random(5))


async def followed_after(double: ConsulDouble, source: ConsulHealthWatcher, n: int) -> float:
    """Seconds from registering instance ``n`` to the watch publishing ``n`` instances."""
    loop = asyncio.get_running_loop()
    made = loop.time()
    double.add_instance("web", f"web-{n}", address=f"10.0.1.{n}", port=80)
    await until(source.watch, lambda s: len(s) == n, timeout=FOLLOW_WITHIN)
    return loop.time() - made


async def blocked_on_current_index(double: ConsulDouble) -> list[RecordedRequest]:
    """The requests so far, once the last one blocks on the service's current index."""
    current = str(double.state.service_index("web"))
    requests = await double.wait_requests(1)
    while requests[-1].param("index") != current:
        requests = await double.wait_requests(len(requests) + 1)
    return requests


async def test_changes_in_quick_succession_are_each_followed_within_a_second(
    consul_double: ConsulDouble,
) -> None:
    source = default_watcher(consul_double)
    async with running(source):
        await until(source.watch, lambda s: True)
        lags = [await followed_after(consul_double, source, n) for n in range(1, 9)]
    # eight changes back to back: past the burst of two, each waits at most one refill
    assert max(lags) < FOLLOW_WITHIN


async def test_a_change_after_an_index_reset_is_followed_within_a_second(
    consul_double: ConsulDouble,
) -> None:
    source = default_watcher(consul_double)
    async with running(source):
        for n in (1, 2, 3):  # the burst is spent
            await followed_after(consul_double, source, n)
        seen = len(await blocked_on_current_index(consul_double))
        consul_double.rewind_index(3)
        # the abandoned read, one non-blocking read, then a read blocked on the old index
        restarted = await consul_double.wait_requests(seen + 2)
        assert restarted[-2].param("index") is None
        assert await followed_after(consul_double, source, 4) < FOLLOW_WITHIN
        rewound = await followed_after(consul_double, source, 5)
    assert rewound < FOLLOW_WITHIN


async def test_constant_churn_is_read_about_ten_times_a_second_and_then_caught_up(
    consul_double: ConsulDouble,
) -> None:
    consul_double.add_instance("web", "steady", address="10.0.0.1", port=80)
    source = default_watcher(consul_double)
    loop = asyncio.get_running_loop()
    async with running(source):
        await until(source.watch, lambda s: len(s) == 1)
        before = len(consul_double.health_requests("web"))
        started = loop.time()
        flips = 0
        while loop.time() - started < CHURN_FOR:
            if flips % 2 == 0:
                consul_double.add_instance("web", "flapping", address="10.0.0.2", port=80)
            else:
                consul_double.remove_instance("flapping")
            flips += 1
            await asyncio.sleep(CHURN_EVERY)  # the churn's pace, not a synchronisation
        churned = loop.time() - started
        reads = len(consul_double.health_requests("web")) - before
        # the churn ends with "flapping" registered or not: either way it is followed
        expected = 2 if flips % 2 == 1 else 1
        await until(source.watch, lambda s: len(s) == expected, timeout=FOLLOW_WITHIN)
    assert flips > 100
    # the burst of two, one read per refill, and the read in flight when the churn began
    assert reads <= 2 + churned / MIN_INTERVAL + 1
    assert reads >= churned / MIN_INTERVAL / 2  # and it did keep reading
