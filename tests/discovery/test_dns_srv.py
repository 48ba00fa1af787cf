"""DnsSrvSource against a real dnsmasq: priorities, TTL refresh, outages, Consul-style names."""

from __future__ import annotations

import logging
import random
import socket
from typing import Any

import pytest

from discovery.dns_srv import DnsSrvSource
from tests.discovery.conftest import Dnsmasq
from tests.discovery.waiting import addresses, eventually, running, until

PAYMENTS = "_payments._tcp.service.consul"


def source(server: Dnsmasq, name: str = PAYMENTS, **kwargs: Any) -> DnsSrvSource:
    settings: dict[str, Any] = {
        "refresh_min": 0.1,
        "refresh_max": 5.0,
        "timeout": 1.0,
        "backoff_cap": 0.2,
        "rng": random.Random(5),
    }
    return DnsSrvSource(name=name, nameservers=[server.nameserver], **(settings | kwargs))


def discovery_logs(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name.startswith("discovery")]


async def test_priorities_and_weights_come_from_the_srv_records(dnsmasq: Dnsmasq) -> None:
    await dnsmasq.start(
        srv=[
            f"{PAYMENTS},pay1.node.consul,8080,1,10",
            f"{PAYMENTS},pay2.node.consul,8081,1,0",
            f"{PAYMENTS},pay3.node.consul,8082,2,5",
        ],
        hosts=["pay1.node.consul,127.0.0.2", "pay2.node.consul,127.0.0.3,::1"],
        # an --address answer is not put in the additional section: A/AAAA get queried
        extra=["--address=/pay3.node.consul/127.0.0.4"],
    )
    dns = source(dnsmasq)
    async with running(dns):
        snapshot = await until(dns.watch, lambda s: True)
    assert [(e.id, e.priority, e.weight) for e in snapshot.endpoints] == [
        ("127.0.0.2:8080", 1, 10),
        ("127.0.0.3:8081", 1, 1),  # RFC 2782 weight 0 -> 1
        ("127.0.0.4:8082", 2, 5),
        ("[::1]:8081", 1, 1),
    ]


@pytest.mark.parametrize(
    "name",
    ["payments.service.consul", "_payments._tcp.service.consul", "primary.payments.service.consul"],
)
async def test_consul_dns_names_are_just_names(dnsmasq: Dnsmasq, name: str) -> None:
    await dnsmasq.start(srv=[f"{name},pay1.node.dc1.consul,8080,1,1"], hosts=[
        "pay1.node.dc1.consul,10.1.10.12"
    ])  # fmt: skip
    dns = source(dnsmasq, name)
    async with running(dns):
        snapshot = await until(dns.watch, lambda s: True)
    assert addresses(snapshot) == ["10.1.10.12:8080"]


async def test_a_ttl_refresh_picks_up_changed_records(dnsmasq: Dnsmasq) -> None:
    await dnsmasq.start(
        srv=[f"{PAYMENTS},pay1.node.consul,8080,1,1"], hosts=["pay1.node.consul,127.0.0.2"], ttl=1
    )
    dns = source(dnsmasq, refresh_min=0.1)
    async with running(dns):
        await until(dns.watch, lambda s: addresses(s) == ["127.0.0.2:8080"])
        await dnsmasq.restart(
            srv=[f"{PAYMENTS},pay1.node.consul,8080,1,1", f"{PAYMENTS},pay2.node.consul,9090,1,1"],
            hosts=["pay1.node.consul,127.0.0.2", "pay2.node.consul,127.0.0.3"],
            ttl=1,
        )
        # TTL 1 s: the next refresh (plus at most one cached TTL in c-ares) sees the change
        changed = await until(dns.watch, lambda s: len(s) == 2, timeout=4.0)
    assert addresses(changed) == ["127.0.0.2:8080", "127.0.0.3:9090"]


async def test_nxdomain_keeps_the_last_good_snapshot(
    dnsmasq: Dnsmasq, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="discovery")
    await dnsmasq.start(
        srv=[f"{PAYMENTS},pay1.node.consul,8080,1,1"], hosts=["pay1.node.consul,127.0.0.2"], ttl=0
    )
    dns = source(dnsmasq)
    async with running(dns):
        good = await until(dns.watch, lambda s: len(s) == 1)
        await dnsmasq.restart(hosts=["pay1.node.consul,127.0.0.2"], ttl=0)  # SRV name gone
        await eventually(
            lambda: dns.watch.errors >= 2 and "NXDOMAIN" in (dns.watch.last_error or "")
        )
        assert dns.watch.value is good and dns.watch.failing
        await dnsmasq.restart(
            srv=[f"{PAYMENTS},pay2.node.consul,8081,1,1"], hosts=["pay2.node.consul,127.0.0.3"]
        )
        await until(dns.watch, lambda s: addresses(s) == ["127.0.0.3:8081"], timeout=3.0)
        assert not dns.watch.failing
    logs = discovery_logs(caplog)
    assert [level for level, _ in logs] == [logging.WARNING, logging.INFO]
    assert logs[0][1] == (
        f"dns:{PAYMENTS}: refresh failed, keeping the last 1 endpoint: DNS SRV {PAYMENTS}: NXDOMAIN"
    )
    assert logs[1][1] == f"dns:{PAYMENTS}: recovered, 1 endpoint"


async def test_a_name_that_never_resolved_keeps_the_watch_not_ready(
    dnsmasq: Dnsmasq, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="discovery")
    await dnsmasq.start(srv=[f"{PAYMENTS},pay1.node.consul,8080,1,1"])
    dns = source(dnsmasq, "_nothing._tcp.service.consul")
    async with running(dns):
        await eventually(lambda: dns.watch.errors >= 3)
    assert not dns.watch.ready and dns.watch.value is None
    assert dns.watch.last_error == "DNS SRV _nothing._tcp.service.consul: NXDOMAIN"
    # One line for the outage, and it does not claim endpoints it never had.
    assert discovery_logs(caplog) == [
        (
            logging.WARNING,
            "dns:_nothing._tcp.service.consul: refresh failed, no endpoints yet: "
            "DNS SRV _nothing._tcp.service.consul: NXDOMAIN",
        )
    ]


async def test_srv_records_whose_targets_do_not_resolve_are_an_outage(dnsmasq: Dnsmasq) -> None:
    await dnsmasq.start(srv=[f"{PAYMENTS},ghost.node.consul,8080,1,1"])
    dns = source(dnsmasq)
    async with running(dns):
        await eventually(lambda: dns.watch.errors >= 1)
    assert not dns.watch.ready
    assert dns.watch.last_error == "no SRV target resolved to an address"


async def test_a_refusing_nameserver_is_an_outage(dnsmasq: Dnsmasq) -> None:
    # nothing listens on the fixture's port until start(): queries are refused
    dns = source(dnsmasq)
    async with running(dns):
        await eventually(lambda: dns.watch.errors >= 2)
    assert not dns.watch.ready and dns.watch.failing


async def test_a_silent_nameserver_times_out() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # bound, never read: every query goes unanswered
        dns = DnsSrvSource(
            name=PAYMENTS,
            nameservers=[f"127.0.0.1:{silent.getsockname()[1]}"],
            timeout=0.2,
            backoff_cap=0.2,
            rng=random.Random(1),
        )
        async with running(dns):
            await eventually(lambda: dns.watch.errors >= 2)
    assert not dns.watch.ready
    assert dns.watch.last_error in (
        f"DNS SRV {PAYMENTS}: no answer within 0.2s",
        f"DNS SRV {PAYMENTS}: timeout",
    )


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (["127.0.0.1:8600"], ("127.0.0.1:8600",)),
        (["[::1]:53"], ("[::1]:53",)),
        (["10.0.0.2"], ("10.0.0.2:53",)),
    ],
)
def test_nameservers_are_host_port_strings(given: list[str], expected: tuple[str, ...]) -> None:
    assert DnsSrvSource(name="x", nameservers=given).nameservers == expected


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": ""},
        {"name": "x", "nameservers": ()},
        {"name": "x", "nameservers": ["::1"]},
        {"name": "x", "refresh_min": 0.0},
        {"name": "x", "refresh_min": 10.0, "refresh_max": 5.0},
        {"name": "x", "timeout": 0.0},
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        DnsSrvSource(**kwargs)
