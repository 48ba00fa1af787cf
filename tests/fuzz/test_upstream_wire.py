"""Mutated responses from an upstream: the caller gets HTTP, the pool is not poisoned.

A raw upstream answers each request with a mutation of a well-formed response (framing,
1xx, HEAD-less 204/304, close-delimited, 101, repeated fields, non-ASCII reason), written
whole or in pieces, and sometimes closes afterwards. Pilotfish must log no error, leave no
exception to the loop, and within its timeouts answer every caller with parseable HTTP
(the upstream's answer, or its own 502/504) or cut the connection; afterwards it holds no
connection or in-flight count, and answers every request once the upstream behaves again.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from tests.discovery.waiting import eventually
from tests.fuzz.client import answer_to, send
from tests.fuzz.faults import watching_faults
from tests.fuzz.mutation import mutate
from tests.sidecar.harness import config_yaml
from tests.transport.servers import RawServer, read_request

RESPONSES = (
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nTrailer: x\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.0 200 OK\r\n\r\nuntil the close",
    b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    b"HTTP/1.1 200 \xc3\xa9\r\nContent-Length: 1\r\nSet-Cookie: a\r\nSet-Cookie: b\r\n\r\nz",
)
GOOD = RESPONSES[0]
COUNT = 300
CONCURRENCY = 16


@pytest.mark.parametrize("seed", [1, 2])
async def test_mutated_responses_get_callers_http_answers_and_leave_nothing_behind(
    seed, sidecar_factory
):
    rng = random.Random(seed)
    behaving = False

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        while True:
            head, _body = await read_request(reader)
            if not head:
                return
            if behaving:
                writer.write(GOOD)
                continue
            data = rng.choice(RESPONSES)
            if rng.random() < 0.8:
                data = mutate(rng, data, RESPONSES)
            await send(writer, data, rng, 5)
            if rng.random() < 0.3:
                return

    async with RawServer(upstream) as endpoint:
        upstream_config = {
            "name": "up",
            "discovery": {"static": [endpoint.id]},
            # Below the client's patience, so a truncated answer ends in the sidecar's 504.
            "timeouts": {"total": "500ms", "stream_idle": "500ms"},
            "retries": {"attempts": 1, "per_try_timeout": "0s"},
            "outlier_detection": None,
            "circuit_breakers": {"endpoint": None},
        }
        sidecar = await sidecar_factory(config_yaml([upstream_config]))
        port = sidecar.address("upstream:up")[1]
        requests = (
            b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
            b"HEAD /c HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        gate = asyncio.Semaphore(CONCURRENCY)
        statuses: Counter[int | None] = Counter()

        async def call() -> None:
            async with gate:
                request = rng.choice(requests)
                # The sidecar's own timeouts end every exchange within 0.5 s; the rest of
                # the patience is slack for a slow machine.
                answer = await answer_to(port, request, rng, may_stall=False, patience=3.0)
                statuses[answer] += 1

        with watching_faults() as faults:
            await asyncio.gather(*(call() for _ in range(COUNT)))
            # The sidecar passed answers through and refused the broken ones itself.
            assert statuses[200] > 0 and statuses[502] > 0, statuses
            cluster = sidecar.clusters["up"]
            await eventually(lambda: cluster.limit.in_flight == 0)
            server = sidecar.state.listeners["upstream:up"].server
            await eventually(lambda: not server.connections)
            behaving = True
            for _ in range(10):
                assert await answer_to(port, requests[0], rng) == 200
        assert faults.seen == []
