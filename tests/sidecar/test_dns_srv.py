"""The sidecar fed by DNS SRV records from a real dnsmasq: priority groups and failover.

Two SRV priority groups point at real backends (host names resolving to 127.0.0.1, one port
each). Traffic goes to priority 0 only; when both of its backends stop, outlier ejection or
an active health check takes them out and traffic moves to priority 1 without a failed GET,
the failures met on the way being retried.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from discovery.model import EndpointSet
from resilience.outlier import Ejected
from sidecar.cluster import Cluster
from tests.discovery.conftest import Dnsmasq, dnsmasq  # noqa: F401 (fixture)
from tests.discovery.waiting import until
from tests.sidecar.harness import Backend, config_yaml, url
from tests.sidecar.traffic import steady_gets

SRV_NAME = "_api._tcp.service.consul"
REQUESTS = 250
RATE = 50.0  # requests per second
STOP_AT = 100  # sequence number of the first request sent after priority 0 has stopped
ONLY_THE_DETECTOR = {"circuit_breakers": {"endpoint": None}}
DETECTORS: dict[str, dict[str, Any]] = {
    "outlier": {
        **ONLY_THE_DETECTOR,
        "outlier_detection": {
            "consecutive_local_origin_failure": 1,
            "base_ejection_time": "1s",
            "max_ejection_time": "2s",
            "max_ejection_percent": 50,
        },
    },
    "health_check": {
        **ONLY_THE_DETECTOR,
        "outlier_detection": None,
        "health_check": {
            "tcp": {},
            "interval": "100ms",
            "timeout": "200ms",
            "unhealthy_threshold": 1,
            "healthy_threshold": 1,
        },
    },
}


def srv_records(groups: dict[int, list[Backend]]) -> tuple[list[str], list[str]]:
    """``--srv-host`` and ``--host-record`` values: one target name per backend."""
    srv, hosts = [], []
    for priority, members in groups.items():
        for backend in members:
            target = f"{backend.name}.node.consul"
            srv.append(f"{SRV_NAME},{target},{backend.port},{priority},1")
            hosts.append(f"{target},127.0.0.1")
    return srv, hosts


def taken_out(cluster: Cluster, detector: str, ejections: list[Ejected]) -> set[str]:
    """Endpoints the detector under test has taken out of service so far."""
    if detector == "outlier":
        return {str(e.id) for e in ejections}
    assert cluster.health is not None
    return {i for i in cluster.member_ids if not cluster.health.is_healthy(i)}


@pytest.mark.parametrize("detector", list(DETECTORS))
async def test_traffic_moves_to_the_next_priority_group_without_a_failed_request(
    dnsmasq: Dnsmasq,  # noqa: F811 (the fixture imported above)
    backends: Callable[..., Any],
    sidecar_factory: Callable[..., Any],
    client: Any,
    detector: str,
) -> None:
    first_a, first_b, second_a, second_b = await backends(4)
    first, second = [first_a, first_b], [second_a, second_b]
    srv, hosts = srv_records({0: first, 1: second})
    await dnsmasq.start(srv=srv, hosts=hosts)
    upstream = {
        "name": "api",
        "discovery": {
            "dns_srv": {
                "name": SRV_NAME,
                "nameservers": [dnsmasq.nameserver],
                "refresh": {"min": "500ms", "max": "5s"},
                "timeout": "1s",
            }
        },
        "retries": {"attempts": 2, "backoff": {"base": "5ms", "max": "20ms"}},
        **DETECTORS[detector],
    }
    sc = await sidecar_factory(config_yaml([upstream]), rng=random.Random(5))
    cluster = sc.clusters["api"]
    snapshot: EndpointSet = await until(sc.sources["api"].watch, lambda s: len(s) == 4)
    assert sorted((e.id, e.priority) for e in snapshot.endpoints) == sorted(
        [(b.address, 0) for b in first] + [(b.address, 1) for b in second]
    )
    ejections: list[Ejected] = []
    cluster.on_ejection.append(ejections.append)
    second_hits_before_stop: list[int] = []

    async def stop_priority_0() -> None:
        second_hits_before_stop.append(sum(b.hits for b in second))
        for backend in first:
            await backend.stop()

    traffic = await steady_gets(
        client,
        url(sc, "upstream:api"),
        total=REQUESTS,
        rate=RATE,
        hooks={STOP_AT: stop_priority_0},
    )

    assert traffic.failed == []
    assert len(traffic.replies) == REQUESTS
    # before the stop: priority 0 only, both of its backends (a request still in flight at
    # the stop may end up at priority 1 through a retry)
    assert second_hits_before_stop == [0]
    assert {b.name for b in first} <= set(traffic.served(0, STOP_AT - 1))
    # after it: priority 1, reached directly once the detector has taken priority 0 out
    after = [r for r in traffic.replies if r.seq >= STOP_AT]
    assert set(traffic.served(STOP_AT)) == {b.name for b in second}
    retried = [r for r in after if r.attempts != "1"]
    if detector == "outlier":
        # Ejection needs a failed attempt; a health check may see the stop before traffic
        # does, so there a retry is possible but not required.
        assert retried, "stopping priority 0 cost no failed attempt: nothing was tested"
    assert len(retried) <= len(after) // 10
    assert taken_out(cluster, detector, ejections) == {b.address for b in first}
