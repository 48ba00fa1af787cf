"""The traceparent field as bytes: read as OpenTelemetry's propagator reads it, written as
it writes it."""

from __future__ import annotations

import random

import pytest
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    TraceFlags,
    get_current_span,
    set_span_in_context,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from sidecar.telemetry.traceparent import field, parse

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
VALUES = [
    f"00-{TRACE}-{PARENT}-01",
    f"00-{TRACE}-{PARENT}-00",
    f"00-{TRACE}-{PARENT}-03",
    f"01-{TRACE}-{PARENT}-01-later-fields",
    f"00-{TRACE}-{PARENT}-01-extra",  # version 00 has nothing after the flags
    f"ff-{TRACE}-{PARENT}-01",
    f"00-{'0' * 32}-{PARENT}-01",
    f"00-{TRACE}-{'0' * 16}-01",
    f"00-{TRACE.upper()}-{PARENT}-01",
    f"00-{TRACE}-{PARENT}-1",
    f"00-{TRACE[:-1]}-{PARENT}-01",
    f"00_{TRACE}-{PARENT}-01",
    f"00-0x{TRACE[2:]}-{PARENT}-01",
    "",
    "garbage",
]


@pytest.mark.parametrize("value", VALUES)
def test_parse_accepts_what_the_propagator_accepts(value: str) -> None:
    context = TraceContextTextMapPropagator().extract({"traceparent": value})
    sc = get_current_span(context).get_span_context()
    expected = (sc.trace_id, sc.span_id, int(sc.trace_flags)) if sc.is_valid else None
    assert parse(value.encode()) == expected


def test_field_is_what_the_propagator_reads_back() -> None:
    line = field(int(TRACE, 16), int(PARENT, 16), 0x01)
    assert line == f"traceparent: 00-{TRACE}-{PARENT}-01\r\n".encode()
    _, _, value = line.decode().rstrip("\r\n").partition(": ")
    assert parse(value.encode()) == (int(TRACE, 16), int(PARENT, 16), 1)


@pytest.mark.parametrize("seed", range(8))
def test_field_writes_what_the_w3c_propagator_writes(seed: int) -> None:
    rng = random.Random(seed)
    flags = TraceFlags(rng.choice([0x00, 0x01, 0x02, 0x03]))
    sc = SpanContext(rng.getrandbits(128) or 1, rng.getrandbits(64) or 1, False, flags)
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(
        carrier, context=set_span_in_context(NonRecordingSpan(sc))
    )
    assert field(sc.trace_id, sc.span_id, sc.trace_flags) == (
        f"traceparent: {carrier['traceparent']}\r\n".encode()
    )
