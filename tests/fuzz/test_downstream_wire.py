"""Mutated requests on the sidecar's listeners: answered as HTTP or closed, nothing leaks.

Each seed sends a few hundred mutations of well-formed requests (framing, Expect, Upgrade,
absolute-form, trace headers, admin pages) to an upstream listener, the inbound listener
and the admin listener of a running sidecar. Pilotfish must log no error, leave no
exception to the loop, answer only with parseable HTTP, and afterwards hold no
connection, no in-flight count and no admission slot, and still proxy a good request.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from tests.discovery.waiting import eventually
from tests.fuzz.client import answer_to
from tests.fuzz.faults import watching_faults
from tests.fuzz.mutation import corpus
from tests.sidecar.harness import config_yaml

REQUESTS = (
    b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"PUT /d HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, x-foo\r\nx-foo: 1\r\n"
    b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\nab",
    b"GET /e HTTP/1.0\r\n\r\n",
    b"GET http://h/abs?q=1 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /stats?format=json HTTP/1.1\r\nHost: x\r\n\r\n",  # admin pages, on any port
    b"HEAD /clusters HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text\r\n\r\n",
    b"POST /config HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    b"GET /f?k=v HTTP/1.1\r\nHost: x\r\nx-user: u1\r\ncookie: a=b\r\n"
    b"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n",
)
COUNT = 400
CONCURRENCY = 32


@pytest.mark.parametrize("seed", [1, 2])
async def test_mutated_requests_get_http_answers_and_leave_nothing_behind(
    seed, backends, sidecar_factory
):
    (backend,) = await backends(1)
    sidecar = await sidecar_factory(
        config_yaml(
            [
                {
                    "name": "up",
                    "discovery": {"static": [backend.address]},
                    "balancer": {"policy": "ring_hash", "hash_on": "header:x-user"},
                }
            ],
            inbound=True,
            service_port=backend.port,
        )
    )
    ports = [sidecar.address(name)[1] for name in ("upstream:up", "inbound", "admin")]
    rng = random.Random(seed)
    gate = asyncio.Semaphore(CONCURRENCY)
    statuses: Counter[int | None] = Counter()

    async def send(data: bytes) -> None:
        async with gate:
            statuses[await answer_to(rng.choice(ports), data, rng)] += 1

    with watching_faults() as faults:
        await asyncio.gather(*(send(data) for data in corpus(seed, COUNT, REQUESTS)))

        # The mutations reached both sides: refused by the parser, and proxied.
        assert statuses[400] > 0 and statuses[200] > 0, statuses
        assert backend.hits > 0
        servers = [listener.server for listener in sidecar.state.listeners.values()]
        await eventually(lambda: not any(server.connections for server in servers))
        assert all(n == 0 for n in sidecar.observer.listeners_in_flight().values())
        assert all(c.limit.in_flight == 0 for c in sidecar.clusters.values())
        assert await answer_to(ports[0], REQUESTS[0], random.Random(0)) == 200
    assert faults.seen == []
