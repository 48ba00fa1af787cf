"""Span export: the batch schedule, a stalled or unreachable collector, the flush on stop."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sidecar.app import Sidecar
from tests.observability.conftest import scrape
from tests.observability.otlp_receiver import CLIENT, SERVER
from tests.observability.test_tracing import tracing
from tests.sidecar.harness import config_yaml, url


async def traced(backends: Any, sidecar_factory: Any, tracing_config: dict[str, Any]) -> Sidecar:
    """A sidecar with one upstream ``api`` over one backend, tracing as given."""
    (backend,) = await backends(1)
    return await sidecar_factory(
        config_yaml(
            [{"name": "api", "discovery": {"static": [backend.address]}}],
            tracing=tracing_config,
        )
    )


async def send(client: Any, sc: Sidecar, count: int = 1) -> None:
    for _ in range(count):
        async with client.get(url(sc, "upstream:api", "/")) as r:
            assert r.status == 200


async def test_an_unreachable_collector_fails_exports_not_requests(
    backends, sidecar_factory, client, closed_port, monkeypatch
):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "0.5")
    endpoint = f"http://127.0.0.1:{closed_port}/v1/traces"
    sc = await traced(backends, sidecar_factory, {"enabled": True, "endpoint": endpoint})
    await send(client, sc, 5)
    await sc.observer.flush()
    metrics = await scrape(client, sc)
    assert metrics.value("pilotfish_trace_export_spans_total", result="failed") == 10
    assert metrics.value("pilotfish_trace_export_spans_total", result="exported") == 0


async def test_spans_reach_the_collector_on_the_export_schedule_without_a_flush(
    otlp, backends, sidecar_factory, client
):
    # Exports go out every 0.5 s by default (the SDK's 5 s would time this out), so no
    # large batch builds up to stall requests while it is encoded.
    sc = await traced(backends, sidecar_factory, tracing(otlp, "svc"))
    await send(client, sc)

    async def no_flush() -> None:
        return None

    spans = await otlp.wait_for(lambda got: len(got) == 2, no_flush, timeout=3.0)
    assert {s.kind for s in spans} == {SERVER, CLIENT}


@pytest.mark.parametrize("queue", [4])
async def test_a_full_export_queue_drops_and_counts_spans(
    otlp, backends, sidecar_factory, client, queue
):
    otlp.gate = asyncio.Event()  # the collector stalls: exports pile up
    sc = await traced(backends, sidecar_factory, tracing(otlp, "svc", max_queue_size=queue))
    requests = 20
    await send(client, sc, requests)
    otlp.gate.set()
    assert await sc.observer.flush()  # waits for the stalled export, then sends the rest
    metrics = await scrape(client, sc)
    dropped = metrics.value("pilotfish_trace_spans_dropped_total")
    exported = metrics.value("pilotfish_trace_export_spans_total", result="exported")
    assert dropped >= 2 * requests - 2 * queue  # at most a queue in export and one waiting
    assert dropped + exported == 2 * requests
    assert len(otlp.spans) == exported


async def test_stopping_the_sidecar_exports_the_spans_still_queued(
    otlp, backends, sidecar_factory, client
):
    # An hour between scheduled exports: only the stop can send these spans.
    sc = await traced(backends, sidecar_factory, tracing(otlp, "svc", schedule_delay="1h"))
    await send(client, sc)
    assert otlp.spans == []
    await sc.stop()
    assert sorted(s.kind for s in otlp.spans) == sorted([SERVER, CLIENT])
