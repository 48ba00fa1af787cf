"""Traces on the wire: two chained sidecars export OTLP/HTTP protobuf to a real receiver."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from sidecar.telemetry import semconv
from tests.observability.conftest import scrape
from tests.observability.otlp_receiver import (
    CLIENT,
    SERVER,
    STATUS_ERROR,
    STATUS_UNSET,
    OtlpReceiver,
    ReceivedSpan,
)
from tests.sidecar.harness import config_yaml, url

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


def tracing(receiver: OtlpReceiver | None, service: str, **extra: Any) -> dict[str, Any]:
    return {
        "enabled": True,
        "service_name": service,
        "endpoint": receiver.endpoint if receiver else None,
        **extra,
    }


def flusher(*sidecars: Any) -> Any:
    async def flush() -> None:
        await asyncio.gather(*(s.observer.flush() for s in sidecars))

    return flush


def by_parent(spans: list[ReceivedSpan], parent: ReceivedSpan) -> list[ReceivedSpan]:
    return [s for s in spans if s.parent_span_id == parent.span_id]


async def test_chain_of_two_sidecars_forms_one_trace_with_a_client_span_per_attempt(
    otlp, backends, sidecar_factory, client
):
    (backend,) = await backends(1)

    async def fail_first(request: web.Request) -> web.Response:
        if backend.hits == 1:
            return web.Response(status=503, text="warming up")
        return web.Response(text="order 7")

    backend.behaviour = fail_first
    b = await sidecar_factory(
        config_yaml([], service_port=backend.port, inbound=True, tracing=tracing(otlp, "svc-b"))
    )
    b_port = b.address("inbound")[1]
    a = await sidecar_factory(
        config_yaml(
            [{"name": "svc-b", "discovery": {"static": [f"127.0.0.1:{b_port}"]}}],
            tracing=tracing(otlp, "svc-a"),
        )
    )
    a_port = a.address("upstream:svc-b")[1]

    headers = {
        "traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01",
        "tracestate": "vendor=abc",
        "baggage": "user=alice",
        "User-Agent": "obs-test/1.0",
    }
    async with client.get(url(a, "upstream:svc-b", "/orders/7?full=1"), headers=headers) as r:
        assert r.status == 200
        assert await r.text() == "order 7"
        assert r.headers["x-pilotfish-attempts"] == "2"

    def complete(spans: list[ReceivedSpan]) -> bool:
        kinds = [(s.service, s.kind) for s in spans]
        return (
            kinds.count(("svc-a", SERVER)) == 1
            and kinds.count(("svc-a", CLIENT)) == 2
            and kinds.count(("svc-b", SERVER)) == 2
            and kinds.count(("svc-b", CLIENT)) == 2
        )

    spans = await otlp.wait_for(complete, flusher(a, b))
    assert {s.trace_id for s in spans} == {TRACE_ID}
    assert {s.name for s in spans} == {"GET"}

    (a_server,) = otlp.of("svc-a", SERVER)
    assert a_server.parent_span_id == CALLER_SPAN
    assert a_server.status == STATUS_UNSET
    attrs = a_server.attributes
    assert attrs["http.request.method"] == "GET"
    assert attrs["url.path"] == "/orders/7"
    assert attrs["url.query"] == "full=1"
    assert attrs["url.scheme"] == "http"
    assert attrs["server.address"] == "127.0.0.1"
    assert attrs["server.port"] == a_port
    assert attrs["network.peer.address"] == "127.0.0.1"
    assert attrs["http.response.status_code"] == 200
    assert attrs["user_agent.original"] == "obs-test/1.0"
    assert attrs["pilotfish.listener"] == "upstream:svc-b"
    assert attrs["pilotfish.attempts"] == 2
    assert "error.type" not in attrs
    assert [name for name, _ in a_server.events] == ["retry"]

    first, second = otlp.of("svc-a", CLIENT)
    for attempt in (first, second):
        assert attempt.parent_span_id == a_server.span_id
        assert attempt.attributes["url.full"] == f"http://127.0.0.1:{b_port}/orders/7?full=1"
        assert attempt.attributes["server.address"] == "127.0.0.1"
        assert attempt.attributes["server.port"] == b_port
        assert attempt.attributes["network.peer.address"] == "127.0.0.1"
        assert attempt.attributes["pilotfish.endpoint"] == f"127.0.0.1:{b_port}"
        assert attempt.attributes["pilotfish.balancer"] == "round_robin"
    assert "http.request.resend_count" not in first.attributes
    assert first.attributes["http.response.status_code"] == 503
    assert first.attributes["error.type"] == "503"
    assert first.status == STATUS_ERROR
    assert second.attributes["http.request.resend_count"] == 1
    assert second.attributes["http.response.status_code"] == 200
    assert second.status == STATUS_UNSET

    # Each of A's attempts is the parent of one of B's SERVER spans.
    b_servers = otlp.of("svc-b", SERVER)
    for attempt, b_server in zip((first, second), b_servers, strict=True):
        assert by_parent(b_servers, attempt) == [b_server]
        assert b_server.attributes["pilotfish.listener"] == "inbound"
    assert b_servers[0].attributes["http.response.status_code"] == 503
    assert b_servers[0].status == STATUS_ERROR  # 5xx is an error on SERVER spans too

    # B's attempts reach the backend carrying their own span id as the parent.
    b_clients = otlp.of("svc-b", CLIENT)
    assert len(backend.requests) == 2
    for b_server, b_client, seen in zip(b_servers, b_clients, backend.requests, strict=True):
        assert b_client.parent_span_id == b_server.span_id
        assert b_client.attributes["server.port"] == backend.port
        sent = {k.lower(): v for k, v in seen["headers"].items()}
        assert sent["traceparent"] == f"00-{TRACE_ID}-{b_client.span_id}-01"
        assert sent["tracestate"] == "vendor=abc"
        assert sent["baggage"] == "user=alice"


async def test_4xx_is_an_error_on_the_client_span_only(otlp, backends, sidecar_factory, client):
    (backend,) = await backends(1)

    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404)

    backend.behaviour = missing
    sc = await sidecar_factory(
        config_yaml(
            [{"name": "api", "discovery": {"static": [backend.address]}}],
            tracing=tracing(otlp, "svc"),
        )
    )
    async with client.get(url(sc, "upstream:api", "/nope")) as r:
        assert r.status == 404
    spans = await otlp.wait_for(lambda s: len(s) == 2, flusher(sc))
    (server,) = otlp.of("svc", SERVER)
    (attempt,) = otlp.of("svc", CLIENT)
    assert attempt.parent_span_id == server.span_id
    assert server.trace_id == attempt.trace_id and len(spans) == 2
    assert server.parent_span_id == ""  # no traceparent came in: a new trace
    assert (server.status, "error.type" in server.attributes) == (STATUS_UNSET, False)
    assert (attempt.status, attempt.attributes["error.type"]) == (STATUS_ERROR, "404")


async def test_connect_failure_span_and_retry_budget_event(
    otlp, sidecar_factory, client, closed_port
):
    sc = await sidecar_factory(
        config_yaml(
            [
                {
                    "name": "dead",
                    "discovery": {"static": [f"127.0.0.1:{closed_port}"]},
                    "retries": {"attempts": 1, "budget": {"min_per_second": 0, "ratio": 0}},
                }
            ],
            tracing=tracing(otlp, "svc"),
        )
    )
    async with client.get(url(sc, "upstream:dead", "/")) as r:
        assert r.status == 502
        assert r.headers["x-pilotfish-error"] == "connect_failure"
    await otlp.wait_for(lambda s: len(s) == 2, flusher(sc))
    (server,) = otlp.of("svc", SERVER)
    (attempt,) = otlp.of("svc", CLIENT)
    assert attempt.attributes["error.type"] == "connect_failure"
    assert "http.response.status_code" not in attempt.attributes
    assert attempt.status == STATUS_ERROR
    assert server.attributes["error.type"] == "502"
    assert set(server.attributes["pilotfish.response_flags"].split(",")) == {"UF", "URX"}
    assert [name for name, _ in server.events] == ["retry_budget_exhausted"]


async def test_unsampled_requests_export_nothing_but_still_propagate(
    otlp, backends, sidecar_factory, client
):
    (backend,) = await backends(1)
    sc = await sidecar_factory(
        config_yaml(
            [{"name": "api", "discovery": {"static": [backend.address]}}],
            tracing=tracing(otlp, "svc", sampler="parentbased_always_on"),
        )
    )
    # The caller decided not to sample: the parent-based sampler follows it.
    async with client.get(
        url(sc, "upstream:api", "/"), headers={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-00"}
    ) as r:
        assert r.status == 200
    assert await sc.observer.flush()
    assert otlp.spans == [] and otlp.exports == 0
    # Nothing of this hop is recorded: the caller's context goes on as it came, so the next
    # hop's parent is a span that exists (W3C Trace Context lets a hop mutate it, or not).
    assert backend.requests[0]["headers"]["traceparent"] == f"00-{TRACE_ID}-{CALLER_SPAN}-00"


@pytest.mark.parametrize(
    ("incoming", "sampler", "expect_flags"),
    [
        (None, "always_off", "02"),  # a root of ours: a random trace id, not sampled
        (f"00-{TRACE_ID}-{CALLER_SPAN}-01", "always_off", "00"),  # decided otherwise
        (f"00-{TRACE_ID.upper()}-{CALLER_SPAN}-01", "parentbased_always_off", "02"),  # invalid
    ],
    ids=["root", "decided-otherwise", "invalid-parent"],
)
async def test_an_unrecorded_hop_names_itself_when_the_callers_context_cannot_go_on(
    otlp, backends, sidecar_factory, client, incoming, sampler, expect_flags
):
    (backend,) = await backends(1)
    sc = await sidecar_factory(
        config_yaml(
            [{"name": "api", "discovery": {"static": [backend.address]}}],
            tracing=tracing(otlp, "svc", sampler=sampler),
        )
    )
    headers = {"traceparent": incoming} if incoming else {}
    for _ in range(2):
        async with client.get(url(sc, "upstream:api", "/"), headers=headers) as r:
            assert r.status == 200
    sent = [
        [value for name, value in request["fields"] if name.lower() == "traceparent"]
        for request in backend.requests
    ]
    assert all(len(values) == 1 for values in sent)  # replaced, never repeated
    (first,), (second,) = sent
    version, trace_id, span_id, flags = first.split("-")
    assert (version, flags) == ("00", expect_flags)
    assert span_id not in (CALLER_SPAN, "0" * 16) and trace_id != "0" * 32
    if incoming is not None and expect_flags == "00":
        assert trace_id == TRACE_ID  # the caller's trace goes on, its decision does not
        assert second.split("-")[1] == TRACE_ID
    else:
        assert second.split("-")[1] != trace_id  # a new trace per request


async def test_tracing_disabled_passes_traceparent_through_untouched(
    backends, sidecar_factory, client
):
    (backend,) = await backends(1)
    sc = await sidecar_factory(
        config_yaml([{"name": "api", "discovery": {"static": [backend.address]}}])
    )
    assert sc.observer.tracing is None
    incoming = f"00-{TRACE_ID}-{CALLER_SPAN}-01"
    async with client.get(url(sc, "upstream:api", "/"), headers={"traceparent": incoming}) as r:
        assert r.status == 200
    assert backend.requests[0]["headers"]["traceparent"] == incoming


@pytest.mark.parametrize(
    "tracing_config",
    [
        {"sampler": "always_off"},  # spans exist (ids propagate) but do not record
        {"endpoint": None},  # recording would reach no one
    ],
)
async def test_no_attribute_dicts_are_built_for_spans_nobody_receives(
    otlp, backends, sidecar_factory, client, monkeypatch, tracing_config
):
    built: list[str] = []

    def forbidden(name: str) -> Any:
        def record(**kwargs: Any) -> dict[str, Any]:
            built.append(name)
            return {}

        return record

    for name in ("server_attributes", "server_end_attributes", "client_attributes"):
        monkeypatch.setattr(semconv, name, forbidden(name))
    (backend,) = await backends(1)
    sc = await sidecar_factory(
        config_yaml(
            [{"name": "api", "discovery": {"static": [backend.address]}}],
            tracing={**tracing(otlp, "svc"), **tracing_config},
        )
    )
    async with client.get(url(sc, "upstream:api", "/")) as r:
        assert r.status == 200
    assert await sc.observer.flush()
    assert built == [] and otlp.spans == []
    assert backend.requests[0]["headers"]["traceparent"].startswith("00-")


async def test_ejection_and_panic_are_events_on_the_request_that_saw_them(
    otlp, backends, sidecar_factory, client
):
    bs = await backends(2)

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500)

    for b in bs:
        b.behaviour = broken
    sc = await sidecar_factory(
        config_yaml(
            [
                {
                    "name": "api",
                    "discovery": {"static": [b.address for b in bs]},
                    "retries": {"attempts": 0},
                    "outlier_detection": {
                        "consecutive_5xx": 1,
                        "base_ejection_time": "60s",
                        "max_ejection_percent": 100,
                    },
                }
            ],
            tracing=tracing(otlp, "svc"),
        )
    )
    for _ in range(3):  # eject one, eject the other, then balance in panic over both
        async with client.get(url(sc, "upstream:api", "/")) as r:
            assert r.status == 500
    await otlp.wait_for(lambda s: len(s) == 6, flusher(sc))
    servers = otlp.of("svc", SERVER)
    events = [[(name, attrs) for name, attrs in s.events] for s in servers]
    ejected = {attrs["pilotfish.endpoint"] for e in events[:2] for _, attrs in e}
    assert [[name for name, _ in e] for e in events] == [["ejection"], ["ejection"], ["panic"]]
    assert ejected == {b.address for b in bs}
    assert events[0][0][1]["pilotfish.ejection.reason"] == "consecutive_5xx"
    metrics = await scrape(client, sc)
    assert metrics.value("pilotfish_cluster_panic", cluster="api") == 1
    assert metrics.value("pilotfish_cluster_panics_total", cluster="api") == 1
    assert (
        sum(
            metrics.value(
                "pilotfish_outlier_ejections_total",
                cluster="api",
                endpoint=b.address,
                reason="consecutive_5xx",
            )
            for b in bs
        )
        == 2
    )


async def test_ring_hash_fallback_is_an_event_and_a_counter(
    otlp, backends, sidecar_factory, client
):
    bs = await backends(2)
    sc = await sidecar_factory(
        config_yaml(
            [
                {
                    "name": "api",
                    "discovery": {"static": [b.address for b in bs]},
                    "balancer": {"policy": "ring_hash", "hash_on": "header:x-user"},
                    "retries": {"attempts": 0},
                    "outlier_detection": {"consecutive_5xx": 1, "base_ejection_time": "60s"},
                }
            ],
            tracing=tracing(otlp, "svc"),
        )
    )
    primary = sc.clusters["api"].primary("u1")
    (home,) = [b for b in bs if b.address == primary]

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500)

    home.behaviour = broken
    for expected in (500, 200):  # the primary fails and is ejected; the key moves on
        async with client.get(url(sc, "upstream:api", "/"), headers={"x-user": "u1"}) as r:
            assert r.status == expected
    await otlp.wait_for(lambda s: len(s) == 4, flusher(sc))
    first, second = otlp.of("svc", SERVER)
    assert [name for name, _ in first.events] == ["ejection"]
    ((name, attrs),) = second.events
    assert (name, attrs["pilotfish.primary"]) == ("ring_hash_fallback", primary)
    assert attrs["pilotfish.endpoint"] != primary
    (_, attempt) = otlp.of("svc", CLIENT)
    assert attempt.attributes["pilotfish.balancer"] == "ring_hash"
    assert attempt.attributes["pilotfish.endpoint"] == attrs["pilotfish.endpoint"]
    metrics = await scrape(client, sc)
    assert metrics.value("pilotfish_upstream_ring_hash_fallbacks_total", cluster="api") == 1


async def test_a_failing_hook_is_counted_and_the_request_goes_on(
    otlp, backends, sidecar_factory, client, monkeypatch
):
    def broken(**kwargs: Any) -> dict[str, Any]:
        raise RuntimeError("attribute bug")

    monkeypatch.setattr(semconv, "client_attributes", broken)
    (backend,) = await backends(1)
    sc = await sidecar_factory(
        config_yaml(
            [{"name": "api", "discovery": {"static": [backend.address]}}],
            tracing=tracing(otlp, "svc"),
        )
    )
    for _ in range(2):
        async with client.get(url(sc, "upstream:api", "/")) as r:
            assert r.status == 200
    metrics = await scrape(client, sc)
    assert metrics.value("pilotfish_telemetry_errors_total") == 2
    labels = {"listener": "upstream:api", "code_class": "2xx"}
    assert metrics.value("pilotfish_downstream_requests_total", **labels) == 2
    assert metrics.value("pilotfish_downstream_requests_in_flight", listener="upstream:api") == 0


async def test_a_ratio_sampler_exports_exactly_the_requests_it_marks_sampled(
    otlp, backends, sidecar_factory, client
):
    # The sampling decision is taken once, cheaply, before any SDK span exists; a sampled
    # request's SDK span must carry the same trace id, so the SDK's own sampler agrees.
    (backend,) = await backends(1)
    sc = await sidecar_factory(
        config_yaml(
            [{"name": "api", "discovery": {"static": [backend.address]}}],
            tracing=tracing(otlp, "svc", sampler="traceidratio", sampler_arg=0.5),
        )
    )
    for _ in range(60):
        async with client.get(url(sc, "upstream:api", "/")) as r:
            assert r.status == 200
    assert await sc.observer.flush()
    sent = [req["headers"]["traceparent"].split("-") for req in backend.requests]
    sampled = {trace_id for _, trace_id, _, flags in sent if int(flags, 16) & 1}
    unsampled = {trace_id for _, trace_id, _, flags in sent if not int(flags, 16) & 1}
    # Root trace ids are random, and every hop says so (W3C trace-flags bit 0x02).
    assert {int(flags, 16) & 2 for *_, flags in sent} == {2}
    bound = round(0.5 * (1 << 64))
    assert 0 < len(sampled) < 60 and len(sampled) + len(unsampled) == 60
    assert all(int(t, 16) & ((1 << 64) - 1) < bound for t in sampled)
    assert all(int(t, 16) & ((1 << 64) - 1) >= bound for t in unsampled)
    servers = {s.trace_id for s in otlp.spans if s.kind == SERVER}
    assert servers == sampled
