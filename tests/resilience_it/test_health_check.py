"""Active health checks against real backends, and panic mode when too few are healthy."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from discovery.model import Endpoint
from resilience.health import HealthTable, Transition
from sidecar.app import Sidecar
from sidecar.health_check import HealthChecker, health_checker
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


# -- single HTTP probes on the sidecar's own client, against a bare TCP upstream ----------

Answer = Callable[[asyncio.StreamWriter], Awaitable[None]]


@dataclass
class RawConnection:
    received: bytearray = field(default_factory=bytearray)
    head: asyncio.Event = field(default_factory=asyncio.Event)  # a request head arrived
    ended: asyncio.Event = field(default_factory=asyncio.Event)  # closed by either side

    def requests(self) -> list[bytes]:
        return bytes(self.received).split(b"\r\n\r\n")[:-1]


class RawUpstream:
    """A TCP server on 127.0.0.1 that writes ``answer`` once a request head arrived.

    It records every connection: what the prober sent and when the connection ended. An
    answer that does not close the connection leaves that to the prober.
    """

    def __init__(self, answer: Answer) -> None:
        self._answer = answer
        self.connections: list[RawConnection] = []
        self._accepted = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> Endpoint:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return Endpoint("127.0.0.1", self._server.sockets[0].getsockname()[1])

    async def connection(self, n: int) -> RawConnection:
        """The ``n``-th connection (from 1), once it was accepted."""
        while len(self.connections) < n:
            self._accepted.clear()
            await self._accepted.wait()
        return self.connections[n - 1]

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        for writer in self._writers:
            writer.transport.abort()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = RawConnection()
        self.connections.append(conn)
        self._writers.append(writer)
        self._accepted.set()
        answering = asyncio.create_task(self._answer_after_head(conn, writer))
        self._tasks.append(answering)
        try:
            while data := await reader.read(65536):
                conn.received += data
                if b"\r\n\r\n" in conn.received:
                    conn.head.set()
        except OSError:
            pass  # reset by the prober: ended all the same
        finally:
            conn.ended.set()

    async def _answer_after_head(self, conn: RawConnection, writer: asyncio.StreamWriter) -> None:
        await conn.head.wait()
        with contextlib.suppress(OSError):
            await self._answer(writer)


def send(raw: bytes, *, close: bool = True) -> Answer:
    async def answer(writer: asyncio.StreamWriter) -> None:
        writer.write(raw)
        await writer.drain()
        if close:
            writer.close()

    return answer


async def endless_chunked_body(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"4000\r\n" + b"x" * 0x4000 + b"\r\n"
    while True:  # until the prober stops reading and drops the connection
        writer.write(chunk)
        await writer.drain()


@pytest.fixture
async def raw_upstream() -> AsyncIterator[Callable[[Answer], Awaitable[RawUpstream]]]:
    upstreams: list[RawUpstream] = []

    async def start(answer: Answer) -> RawUpstream:
        upstream = RawUpstream(answer)
        upstreams.append(upstream)
        return upstream

    yield start
    for upstream in upstreams:
        await upstream.close()


async def probing_checker(lab, timeout: str, **http: object) -> HealthChecker:
    """The checker of a sidecar whose own member is a closed port: probes go where told."""
    sc = await lab.start_sidecar(
        [f"127.0.0.1:{closed_port()}"],
        health_check={"http": {"path": "/health", **http}, "interval": "1h", "timeout": timeout},
    )
    return checker_of(sc)


OK_EMPTY = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

ANSWER_CASES = [
    ("body framed by Content-Length", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", True),
    ("body ended by the close", b"HTTP/1.1 200 OK\r\n\r\nok", True),
    (
        "chunked body",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        True,
    ),
    ("header line without a colon", b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", False),
    ("Content-Length not a number", b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n", False),
    (
        "two Content-Lengths",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        False,
    ),
    ("four-digit status", b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n", False),
    ("status line cut off by the close", b"HTTP/1.1 20", False),
    (
        "good status, body cut off by the close",
        b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nok",
        False,
    ),
    (
        "good status, broken chunk framing",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        False,
    ),
]


@pytest.mark.parametrize(("case", "raw", "passes"), ANSWER_CASES, ids=[c[0] for c in ANSWER_CASES])
async def test_a_malformed_or_cut_off_answer_fails_the_probe_at_once(
    lab, raw_upstream, caplog, case, raw, passes
):
    upstream = await raw_upstream(send(raw))
    endpoint = await upstream.start()
    checker = await probing_checker(lab, timeout="2s")
    failed_before = checker.failed_probes
    loop = asyncio.get_running_loop()
    started = loop.time()
    with caplog.at_level(logging.ERROR, logger="pilotfish.health"):
        assert await checker.probe(endpoint) is passes, case
    assert loop.time() - started < 1.0, "decided by the answer, not by the 2 s timeout"
    assert checker.failed_probes - failed_before == (0 if passes else 1)
    assert caplog.records == [], "an expected kind of failure, not a crash of the probe"


STALL_CASES = [
    ("no answer at all", send(b"", close=False)),
    ("status line and no more", send(b"HTTP/1.1 200 OK\r\n", close=False)),
    (
        "headers, then a body that stops",
        send(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nok", close=False),
    ),
]


@pytest.mark.parametrize(("case", "answer"), STALL_CASES, ids=[c[0] for c in STALL_CASES])
async def test_a_probe_that_hangs_fails_at_its_timeout_and_drops_the_connection(
    lab, raw_upstream, case, answer
):
    upstream = await raw_upstream(answer)
    endpoint = await upstream.start()
    checker = await probing_checker(lab, timeout="300ms")
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await checker.probe(endpoint) is False, case
    assert 0.3 - 0.02 <= loop.time() - started < 0.3 + 0.3
    (conn,) = upstream.connections
    async with asyncio.timeout(1):
        await conn.ended.wait()


async def test_an_endless_body_is_read_only_up_to_its_limit(lab, raw_upstream):
    upstream = await raw_upstream(endless_chunked_body)
    endpoint = await upstream.start()
    checker = await probing_checker(lab, timeout="2s")
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await checker.probe(endpoint) is True
    assert loop.time() - started < 1.0, "the probe stopped reading, it did not time out"
    (conn,) = upstream.connections
    async with asyncio.timeout(1):
        await conn.ended.wait()


async def test_every_http_probe_opens_a_fresh_connection_and_closes_it(lab, raw_upstream):
    upstream = await raw_upstream(send(OK_EMPTY, close=False))  # would keep it alive
    endpoint = await upstream.start()
    checker = await probing_checker(lab, timeout="1s")
    for n in range(1, 4):
        assert await checker.probe(endpoint) is True
        assert len(upstream.connections) == n
        async with asyncio.timeout(1):
            await upstream.connections[-1].ended.wait()  # closed by the prober
    assert [len(c.requests()) for c in upstream.connections] == [1, 1, 1]


@pytest.mark.parametrize(
    ("host", "expected_host"), [(None, "{endpoint}"), ("svc.internal", "svc.internal")]
)
async def test_request_head_of_an_http_probe(lab, raw_upstream, host, expected_host):
    upstream = await raw_upstream(send(OK_EMPTY))
    endpoint = await upstream.start()
    checker = await probing_checker(lab, timeout="1s", path="/ready?deep=1", host=host)
    assert await checker.probe(endpoint) is True
    (conn,) = upstream.connections
    async with asyncio.timeout(1):
        await conn.ended.wait()
    (request,) = conn.requests()
    line, *fields = request.decode().split("\r\n")
    assert line == "GET /ready?deep=1 HTTP/1.1"
    headers = dict(f.split(": ", 1) for f in fields)
    assert {k.lower(): v for k, v in headers.items()} == {
        "host": expected_host.format(endpoint=endpoint.id),
        "user-agent": "pilotfish-health-check",
        "accept": "*/*",
        "connection": "close",
    }
    assert bytes(conn.received).endswith(b"\r\n\r\n"), "no body after the head"


async def test_stopping_a_checker_closes_the_connection_of_a_probe_in_flight(lab, raw_upstream):
    answers = [send(OK_EMPTY), send(b"", close=False)]  # the sidecar's own probe, then ours

    async def answer(writer: asyncio.StreamWriter) -> None:
        await answers.pop(0)(writer)

    upstream = await raw_upstream(answer)
    endpoint = await upstream.start()
    sc = await lab.start_sidecar(
        [endpoint.id],
        health_check={"http": {"path": "/health"}, "interval": "1h", "timeout": "30s"},
    )
    async with asyncio.timeout(2):
        await (await upstream.connection(1)).ended.wait()  # its first round is over
    checker = health_checker(sc.clusters["api"], rng=random.Random(1))
    assert checker is not None
    task = asyncio.create_task(checker.run())
    async with asyncio.timeout(2):
        in_flight = await upstream.connection(2)
        await in_flight.head.wait()
    assert not in_flight.ended.is_set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with asyncio.timeout(1):
        await in_flight.ended.wait()
    assert (checker.probes, checker.rounds) == (1, 0)
