"""SamplingRule decides exactly as the SDK sampler of the same name and argument."""

from __future__ import annotations

import random

import pytest
from opentelemetry.trace import (
    INVALID_SPAN_CONTEXT,
    NonRecordingSpan,
    SpanContext,
    TraceFlags,
    set_span_in_context,
)

from sidecar.telemetry.sampling import SamplingRule
from sidecar.telemetry.span_export import build_sampler

NAMES = [
    f"{prefix}{base}"
    for prefix in ("", "parentbased_")
    for base in ("always_on", "always_off", "traceidratio")
]
PARENTS = [
    None,
    INVALID_SPAN_CONTEXT,
    SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)),
    SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.DEFAULT)),
]


@pytest.mark.parametrize("ratio", [0.0, 0.01, 0.5, 1.0])
@pytest.mark.parametrize("name", NAMES)
def test_the_rule_agrees_with_the_sdk_sampler(name: str, ratio: float) -> None:
    rng = random.Random(f"{name}{ratio}")
    rule = SamplingRule(name, ratio)
    sdk = build_sampler(name, ratio)
    decisions = set()
    for parent in PARENTS:
        context = None if parent is None else set_span_in_context(NonRecordingSpan(parent))
        flag = parent.trace_flags.sampled if parent is not None and parent.is_valid else None
        for _ in range(300):
            trace_id = rng.getrandbits(128) or 1
            expected = sdk.should_sample(context, trace_id, "GET").decision.is_sampled()
            assert rule.sampled(flag, trace_id) == expected, (parent, hex(trace_id))
            decisions.add(expected)
    if name.endswith("traceidratio") and 0 < ratio < 1:
        assert decisions == {True, False}  # the ids exercised both sides of the bound


def test_an_unknown_sampler_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown sampler 'sometimes'"):
        SamplingRule("sometimes", 0.5)
