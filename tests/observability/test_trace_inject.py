"""The sidecar's traceparent/tracestate writer agrees with OpenTelemetry's W3C propagator."""

from __future__ import annotations

import random

import pytest
from multidict import CIMultiDict
from opentelemetry.trace import (
    INVALID_SPAN_CONTEXT,
    NonRecordingSpan,
    SpanContext,
    TraceFlags,
    TraceState,
    set_span_in_context,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from sidecar.telemetry.tracing import _inject

_RNG = random.Random(7)
CONTEXTS = [
    SpanContext(
        _RNG.getrandbits(128) or 1,
        _RNG.getrandbits(64) or 1,
        is_remote=False,
        trace_flags=TraceFlags(flags),
        trace_state=state,
    )
    for flags in (TraceFlags.DEFAULT, TraceFlags.SAMPLED)
    for state in (TraceState(), TraceState([("vendor", "v1"), ("other", "x=y")]))
] + [SpanContext(1, 1, is_remote=False), INVALID_SPAN_CONTEXT]


@pytest.mark.parametrize("sc", CONTEXTS)
def test_inject_writes_what_the_w3c_propagator_writes(sc: SpanContext) -> None:
    ours: CIMultiDict[str] = CIMultiDict({"tracestate": "incoming=1", "x": "y"})
    theirs: CIMultiDict[str] = CIMultiDict(ours)
    _inject(ours, sc)
    TraceContextTextMapPropagator().inject(
        theirs, context=set_span_in_context(NonRecordingSpan(sc))
    )
    assert list(ours.items()) == list(theirs.items())
