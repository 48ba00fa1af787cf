"""What telemetry costs one request: ``python -m bench.telemetry [--requests N]``.

The observer's four hooks of one request with one attempt (``request_start``,
``attempt_start``, ``attempt_end``, ``request_end``), called in a loop on a started sidecar's
own ``Telemetry``, for: no observer at all (the loop's own cost, subtracted from the
others), metrics only (tracing and the access log off), and metrics with tracing on and
exporting but the request not sampled — once for a request that starts the trace, once for
one that carries the caller's ``traceparent``. Figures are microseconds of CPU per
request, the best of a few repetitions, with the loop's cost taken off.

Invariants: no socket carries a request (the sidecar binds its listeners and discovers one
static endpoint, nothing more); nothing is exported (the sampler never samples).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from typing import Any

from resilience.outcome import Outcome
from sidecar.app import Sidecar
from sidecar.config import load_text
from sidecar.listener.body import EMPTY_BODY
from sidecar.listener.fields import RequestFields
from sidecar.listener.request import HTTP11, DownstreamRequest
from sidecar.pipeline.exchange import Exchange
from sidecar.telemetry.observer import NULL_OBSERVER
from sidecar.transport.request_head import RequestHead

CONFIG = """
service: {{name: bench, port: 1}}
listeners: {{admin: {{address: 127.0.0.1, port: 0}}}}
upstreams:
  - name: backend
    listen: 127.0.0.1:0
    discovery: {{static: ["127.0.0.1:9"]}}
tracing: {tracing}
access_log: {{enabled: false}}
"""
METRICS_ONLY = "{enabled: false}"
UNSAMPLED = "{enabled: true, endpoint: 'http://127.0.0.1:9/v1/traces', sampler: always_off}"
CALLER = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def request(traceparent: bytes | None) -> DownstreamRequest:
    fields = RequestFields()
    fields.add(b"Host", b"backend")
    fields.add(b"User-Agent", b"bench")
    if traceparent is not None:
        fields.add(b"traceparent", traceparent)
    return DownstreamRequest(
        "GET", "/", fields, HTTP11, None, EMPTY_BODY, None, False, True, "127.0.0.1", None, "x"
    )


def hooks_per_request(sc: Sidecar, observer: Any, req: DownstreamRequest, n: int) -> float:
    cluster = sc.clusters["backend"]
    state = next(iter(cluster.states.values()))
    head = RequestHead("GET", "/", b"Host: backend\r\n")
    start = time.process_time()
    for _ in range(n):
        ctx = observer.request_start("upstream:backend", req)
        ex = Exchange(head, None, True, "127.0.0.1", "id", None, ctx)
        token = observer.attempt_start(ex, cluster, state)
        observer.attempt_end(token, ex, Outcome.SUCCESS, 200, None)
        observer.request_end(ctx, "upstream:backend", req, ex, 200, None, 100)
    return (time.process_time() - start) / n * 1e6


async def measure(tracing: str, traceparent: bytes | None, n: int, repeats: int) -> float:
    sc = Sidecar(load_text(CONFIG.format(tracing=tracing), environ={}))
    await sc.start()
    try:
        req = request(traceparent)
        gc.collect()
        gc.freeze()
        best = min(hooks_per_request(sc, sc.observer, req, n) for _ in range(repeats))
        bare = min(hooks_per_request(sc, NULL_OBSERVER, req, n) for _ in range(repeats))
        gc.unfreeze()
        return best - bare
    finally:
        await sc.stop()


async def main(n: int, repeats: int) -> None:
    rows = [
        ("metrics only", METRICS_ONLY, None),
        ("metrics + tracing, unsampled root", UNSAMPLED, None),
        ("metrics + tracing, unsampled, caller's traceparent", UNSAMPLED, CALLER),
    ]
    print(f"{'telemetry of one request (µs CPU, hooks only)':<55} {'µs':>6}")
    for name, tracing, traceparent in rows:
        figure = await measure(tracing, traceparent, n, repeats)
        print(f"{name:<55} {figure:6.2f}")


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.repeats))


if __name__ == "__main__":
    run()
