"""Active health checks against real backends, and panic mode when too few are healthy."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

from resilience.health import HealthTable, Transition
from sidecar.app import Sidecar
from sidecar.health_check import HealthChecker
from tests.resilience_it.support import (
    HealthScript,
    admin_clusters,
    api,
    closed_port,
    cluster_view,
    endpoint_view,
    served_by,
)

FAST_HTTP_CHECK = {
    "http": {"path": "/health"},
    "interval": "50ms",
    "timeout": "500ms",
    "jitter": 0,
    "healthy_threshold": 2,
    "unhealthy_threshold": 3,
}


class Transitions:
    """Health transitions of one checker, each with a snapshot taken when it happened."""

    def __init__(
        self, checker: HealthChecker, snapshot: Callable[[], object] = lambda: None
    ) -> None:
        self.seen: list[tuple[str, bool, object]] = []
        self._changed = asyncio.Event()
        self._snapshot = snapshot
        checker.on_transition.append(self._on)

    def _on(self, endpoint_id: str, transition: Transition) -> None:
        self.seen.append((endpoint_id, transition.healthy, self._snapshot()))
        self._changed.set()

    async def wait_for(self, endpoint_id: str, healthy: bool, timeout: float = 5) -> object:
        async with asyncio.timeout(timeout):
            while True:
                for seen_id, seen_healthy, snap in self.seen:
                    if (seen_id, seen_healthy) == (endpoint_id, healthy):
                        return snap
                self._changed.clear()
                await self._changed.wait()


def checker_of(sidecar: Sidecar) -> HealthChecker:
    return sidecar.health_checkers["api"]


async def test_http_check_takes_a_backend_out_after_three_failures_and_back_after_two(lab, client):
    backends = await lab.start_backends(3)
    scripts = [HealthScript(b) for b in backends]
    for b, s in zip(backends, scripts, strict=True):
        b.behaviour = s
    sick = scripts[0]
    sick.status = 503
    sc = await lab.start_sidecar([b.address for b in backends], health_check=FAST_HTTP_CHECK)
    seen = Transitions(checker_of(sc), lambda: dict(sick.answered))

    async with asyncio.timeout(10):
        at_unhealthy = await seen.wait_for(backends[0].address, healthy=False)
        assert at_unhealthy == {503: 3}
        for _ in range(12):
            async with client.get(api(sc)) as r:
                assert r.status == 200
                assert served_by(r) != backends[0].name
        assert sick.traffic == 0
        view = endpoint_view(await admin_clusters(client, sc), "api", backends[0].address)
        assert (view["health"], view["available"]) == ("unhealthy", False)

        sick.status = 200
        at_healthy = await seen.wait_for(backends[0].address, healthy=True)
        assert at_healthy[200] == 2
        served = []
        for _ in range(6):
            async with client.get(api(sc)) as r:
                served.append(served_by(r))
        assert served.count(backends[0].name) == 2
    # The healthy backends never changed verdict.
    assert [(i, h) for i, h, _ in seen.seen] == [
        (backends[0].address, False),
        (backends[0].address, True),
    ]


async def test_endpoint_is_routable_before_its_first_verdict(lab, client):
    (backend,) = await lab.start_backends(1)
    script = HealthScript(backend, status=503)
    backend.behaviour = script
    sc = await lab.start_sidecar(
        [backend.address],
        panic_threshold=0,
        health_check={**FAST_HTTP_CHECK, "interval": "1s"},
    )
    async with client.get(api(sc)) as r:
        assert r.status == 200
    assert cluster_of_health(sc).is_healthy(backend.address)


async def test_initially_unhealthy_endpoint_waits_for_passing_probes(lab, client):
    (backend,) = await lab.start_backends(1)
    script = HealthScript(backend, status=503)
    backend.behaviour = script
    sc = await lab.start_sidecar(
        [backend.address],
        panic_threshold=0,
        health_check={**FAST_HTTP_CHECK, "initial_state": "unhealthy"},
    )
    seen = Transitions(checker_of(sc), lambda: dict(script.answered))
    async with client.get(api(sc)) as r:
        assert r.status == 503
        assert r.headers["x-pilotfish-error"] == "no_healthy_upstream"
    assert script.traffic == 0

    script.status = 200
    at_healthy = await seen.wait_for(backend.address, healthy=True)
    assert at_healthy[200] == 2
    async with client.get(api(sc)) as r:
        assert r.status == 200


async def test_tcp_check_marks_a_closed_port_unhealthy(lab, client):
    backends = await lab.start_backends(2)
    refused = f"127.0.0.1:{closed_port()}"
    sc = await lab.start_sidecar(
        [refused, *(b.address for b in backends)],
        health_check={
            "tcp": {},
            "interval": "50ms",
            "timeout": "500ms",
            "jitter": 0,
            "unhealthy_threshold": 2,
        },
    )
    checker = checker_of(sc)
    seen = Transitions(checker, lambda: checker.failed_probes)
    failed_at_transition = await seen.wait_for(refused, healthy=False)
    assert failed_at_transition == 2  # only the closed port fails its probes
    clusters = await admin_clusters(client, sc)
    assert endpoint_view(clusters, "api", refused)["health"] == "unhealthy"
    for b in backends:
        assert endpoint_view(clusters, "api", b.address)["health"] == "healthy"


async def test_panic_spreads_traffic_over_all_when_too_few_are_healthy(lab, client):
    backends = await lab.start_backends(3)
    scripts = [HealthScript(b) for b in backends]
    for b, s in zip(backends, scripts, strict=True):
        b.behaviour = s
    scripts[0].status = scripts[1].status = 503
    sc = await lab.start_sidecar(
        [b.address for b in backends],
        panic_threshold=50,
        health_check={**FAST_HTTP_CHECK, "unhealthy_threshold": 2},
    )
    seen = Transitions(checker_of(sc))
    await seen.wait_for(backends[0].address, healthy=False)
    await seen.wait_for(backends[1].address, healthy=False)

    served = []
    for _ in range(30):
        async with client.get(api(sc)) as r:
            assert r.status == 200
            served.append(served_by(r))
    # One healthy endpoint of three is below 50%: all three share the traffic.
    assert sorted(served.count(b.name) for b in backends) == [10, 10, 10]
    view = cluster_view(await admin_clusters(client, sc), "api")
    assert view["panic"] is True
    assert [e["health"] for e in view["endpoints"]].count("unhealthy") == 2


def cluster_of_health(sidecar: Sidecar) -> HealthTable:
    health = sidecar.clusters["api"].health
    assert health is not None
    return health


async def test_a_passing_health_check_returns_an_ejected_endpoint_early(lab, client):
    backends = await lab.start_backends(3)
    flaky = backends[0]

    async def fail_traffic(request: web.Request) -> web.Response:
        if request.path == "/health":
            return web.Response(text="health")
        return web.Response(status=500, text="broken")

    flaky.behaviour = fail_traffic
    sc = await lab.start_sidecar(
        [b.address for b in backends],
        outlier_detection={"consecutive_5xx": 2, "base_ejection_time": "60s"},
        circuit_breakers={"endpoint": None},
        retries={"attempts": 2, "retry_on": ["5xx"]},
        health_check={**FAST_HTTP_CHECK, "interval": "200ms"},
    )
    cluster = sc.clusters["api"]
    ejected = asyncio.Event()
    cluster.on_ejection.append(lambda e: ejected.set())
    async with asyncio.timeout(10):
        while not ejected.is_set():
            async with client.get(api(sc)) as r:
                assert r.status == 200  # retried on a healthy endpoint
        # Ejected for 60 s, but its health check passes: it is back within a few probes.
        while cluster.outlier.is_ejected(flaky.address):
            await asyncio.sleep(0.05)  # polling the state the probe loop changes
    assert cluster.outlier.snapshot(flaky.address)["times_ejected"] == 1
    assert cluster.available(flaky.address)
