"""ConsulHealthWatcher against the Consul double: changes, faults, index rules, ACL token."""

from __future__ import annotations

import logging
import random
from typing import Any

import pytest

from discovery.consul import ConsulClientOptions, ConsulHealthWatcher
from tests.discovery.conftest import free_port
from tests.discovery.consul_double import AclToken, ConsulDouble, Fault
from tests.discovery.waiting import addresses, eventually, running, until

SECRET = "7c0ffee0-aaaa-bbbb-cccc-000000000001"


def watcher(double: ConsulDouble, **kwargs: Any) -> ConsulHealthWatcher:
    options = ConsulClientOptions(address=double.address, token=kwargs.pop("token", None))
    settings: dict[str, Any] = {
        "service": "web",
        "wait": 5.0,
        "min_interval": 0.0,
        "backoff_cap": 0.2,
        "rng": random.Random(7),
    }
    return ConsulHealthWatcher(options, **(settings | kwargs))


def discovery_logs(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name.startswith("discovery")]


async def test_instances_added_and_removed_show_up_within_a_second(
    consul_double: ConsulDouble,
) -> None:
    consul_double.add_instance("web", "web-1", address="10.0.0.1", port=8080)
    source = watcher(consul_double)
    async with running(source):
        first = await until(source.watch, lambda s: len(s) == 1)
        assert addresses(first) == ["10.0.0.1:8080"]
        consul_double.add_instance("web", "web-2", address="10.0.0.2", port=8080)
        await until(source.watch, lambda s: len(s) == 2)
        consul_double.remove_instance("web-1")
        last = await until(source.watch, lambda s: len(s) == 1)
        assert addresses(last) == ["10.0.0.2:8080"]
        assert source.watch.updates == 3


async def test_a_service_with_no_instance_is_a_ready_empty_snapshot(
    consul_double: ConsulDouble,
) -> None:
    source = watcher(consul_double)
    async with running(source):
        assert len(await until(source.watch, lambda s: True)) == 0
        assert source.watch.ready and not source.watch.failing


async def test_health_changes_drop_and_restore_an_instance(consul_double: ConsulDouble) -> None:
    consul_double.add_instance("web", "web-1", address="10.0.0.1", port=80)
    consul_double.add_instance("web", "web-2", address="10.0.0.2", port=80)
    source = watcher(consul_double)
    async with running(source):
        await until(source.watch, lambda s: len(s) == 2)
        consul_double.set_check_status("service:web-1", "critical")
        assert addresses(await until(source.watch, lambda s: len(s) == 1)) == ["10.0.0.2:80"]
        consul_double.set_check_status("service:web-1", "passing")
        await until(source.watch, lambda s: len(s) == 2)


async def test_warning_instances_use_the_warning_weight_unless_passing_only(
    consul_double: ConsulDouble,
) -> None:
    consul_double.add_instance(
        "web", "web-1", address="10.0.0.1", port=80, weights={"Passing": 5, "Warning": 2},
        status="warning",
    )  # fmt: skip
    source = watcher(consul_double, passing_only=False)
    async with running(source):
        snapshot = await until(source.watch, lambda s: len(s) == 1)
    assert snapshot.endpoints[0].weight == 2
    assert all(r.param("passing") is None for r in consul_double.health_requests("web"))


async def test_all_requested_tags_must_match(consul_double: ConsulDouble) -> None:
    consul_double.add_instance("web", "a", address="10.0.0.1", port=80, tags=["v1"])
    consul_double.add_instance("web", "b", address="10.0.0.2", port=80, tags=["v1", "canary"])
    source = watcher(consul_double, tags=("v1", "canary"))
    async with running(source):
        snapshot = await until(source.watch, lambda s: True)
    assert addresses(snapshot) == ["10.0.0.2:80"]
    assert snapshot.endpoints[0].tags == ("v1", "canary")
    assert consul_double.health_requests("web")[0].param("tag") == "v1"


async def test_the_datacenter_is_sent(consul_double: ConsulDouble) -> None:
    consul_double.add_instance("web", "a", address="10.0.0.1", port=80)
    good = watcher(consul_double, datacenter="dc1")
    async with running(good):
        await until(good.watch, lambda s: len(s) == 1)
    assert consul_double.health_requests("web")[0].param("dc") == "dc1"
    bad = watcher(consul_double, datacenter="dc9")
    async with running(bad):
        await eventually(lambda: bad.watch.errors >= 1)
    assert not bad.watch.ready
    assert "No path to datacenter" in (bad.watch.last_error or "")


@pytest.mark.parametrize("fault", [Fault.ERROR_500, Fault.BAD_JSON, Fault.HANG])
async def test_a_consul_fault_keeps_the_last_good_snapshot_and_recovers(
    consul_double: ConsulDouble, caplog: pytest.LogCaptureFixture, fault: Fault
) -> None:
    caplog.set_level(logging.INFO, logger="discovery")
    consul_double.add_instance("web", "web-1", address="10.0.0.1", port=80)
    # a short wait keeps the client-side timeout of a hung read (wait + wait/16 + 1s) short
    source = watcher(consul_double, wait=0.3)
    async with running(source):
        good = await until(source.watch, lambda s: len(s) == 1)
        consul_double.inject(fault)
        seen = len(consul_double.health_requests("web"))
        # the read in flight may finish normally; the two after it fail, the one after that
        # proves the client has handled them
        await consul_double.wait_requests(seen + 3, timeout=8.0)
        assert source.watch.failing and source.watch.errors >= 2
        assert source.watch.value is good
        consul_double.add_instance("web", "web-2", address="10.0.0.2", port=80)
        consul_double.clear_faults()
        await until(source.watch, lambda s: len(s) == 2, timeout=3.0)
        assert not source.watch.failing
    logs = discovery_logs(caplog)
    assert [level for level, _ in logs] == [logging.WARNING, logging.INFO]
    assert logs[0][1].startswith("consul:web: refresh failed, keeping the last 1 endpoint: ")
    assert logs[1][1] == "consul:web: recovered, 2 endpoints"


async def test_a_wake_up_without_change_publishes_and_logs_nothing(
    consul_double: ConsulDouble, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="discovery")
    consul_double.add_instance("web", "web-1", address="10.0.0.1", port=80)
    consul_double.add_instance("web", "web-2", address="10.0.0.2", port=80, status="critical")
    source = watcher(consul_double)
    async with running(source):
        await until(source.watch, lambda s: len(s) == 1)
        seen = len(consul_double.health_requests("web"))
        # ?passing applies after blocking: this wakes the read with an unchanged body
        consul_double.set_check_status("service:web-2", "warning")
        requests = await consul_double.wait_requests(seen + 1)
        assert int(requests[-1].param("index") or 0) > int(requests[-2].param("index") or 0)
        assert source.watch.updates == 1
    assert discovery_logs(caplog) == []


async def test_an_index_going_backwards_restarts_with_one_non_blocking_read(
    consul_double: ConsulDouble,
) -> None:
    consul_double.add_instance("web", "web-1", address="10.0.0.1", port=80)
    source = watcher(consul_double)
    async with running(source):
        await until(source.watch, lambda s: len(s) == 1)
        blocked = await consul_double.wait_requests(2)
        assert int(blocked[-1].param("index") or 0) > 3
        consul_double.rewind_index(3)
        after = (await consul_double.wait_requests(4))[2:]
    assert after[0].param("index") is None  # reset to 0: a plain read
    assert after[1].param("index") == "3"  # then blocking again on the restored index


async def test_a_zero_index_from_consul_is_never_blocked_on(consul_double: ConsulDouble) -> None:
    consul_double.add_instance("web", "web-1", address="10.0.0.1", port=80)
    consul_double.inject(Fault.ZERO_INDEX)
    source = watcher(consul_double, wait=0.2)
    async with running(source):
        requests = await consul_double.wait_requests(4)
    assert [r.param("index") for r in requests[:4]] == [None, "1", "1", "1"]
    assert all(r.param("wait") == "200ms" for r in requests[1:4])


async def test_the_token_goes_in_the_header_and_never_into_logs_or_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with ConsulDouble(acl_tokens={SECRET: AclToken("accessor-1")}) as double:
        double.add_instance("web", "web-1", address="10.0.0.1", port=80)
        source = watcher(double, token=SECRET)
        async with running(source):
            await until(source.watch, lambda s: len(s) == 1)  # anonymous would see none
            double.inject(Fault.ERROR_500)
            double.add_instance("web", "web-2", address="10.0.0.2", port=80)
            await eventually(lambda: source.watch.failing)
        sent = double.health_requests("web")
        assert all(r.headers.get("X-Consul-Token") == SECRET for r in sent)
        assert all(r.param("token") is None for r in sent)
        assert SECRET not in (source.watch.last_error or "")
        assert SECRET not in repr(source.__dict__)
    assert SECRET not in caplog.text


async def test_an_unknown_token_is_an_outage_naming_the_acl_error() -> None:
    async with ConsulDouble(acl_tokens={"right": AclToken("a")}) as double:
        source = watcher(double, token=SECRET)
        async with running(source):
            await eventually(lambda: source.watch.errors >= 2)
    assert not source.watch.ready
    assert "HTTP 403 ACL not found" in (source.watch.last_error or "")
    assert SECRET not in (source.watch.last_error or "")


async def test_an_unreachable_agent_leaves_the_watch_not_ready(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="discovery")
    options = ConsulClientOptions(address=f"127.0.0.1:{free_port()}")
    source = ConsulHealthWatcher(options, service="web", backoff_cap=0.2, rng=random.Random(1))
    async with running(source):
        await eventually(lambda: source.watch.errors >= 3)
    assert not source.watch.ready
    assert "unreachable" in (source.watch.last_error or "")
    assert len(discovery_logs(caplog)) == 1  # one warning for the whole outage


async def test_churn_is_rate_limited_by_a_burst_of_two(consul_double: ConsulDouble) -> None:
    consul_double.add_instance("web", "web-1", address="10.0.0.1", port=80)
    source = watcher(consul_double, min_interval=30.0)
    async with running(source):
        await until(source.watch, lambda s: len(s) == 1)  # answer 1 spends token 1
        consul_double.add_instance("web", "web-2", address="10.0.0.2", port=80)
        await until(source.watch, lambda s: len(s) == 2)  # answer 2 spends token 2
        consul_double.add_instance("web", "web-3", address="10.0.0.3", port=80)
        await until(source.watch, lambda s: len(s) == 3)  # answer 3: no token left
        assert len(consul_double.health_requests("web")) == 3
        with pytest.raises(TimeoutError):  # the fourth read waits ~30 s for a token
            await consul_double.wait_requests(4, timeout=0.5)
