"""The configured sampler's decision as a plain function of the parent and the trace id.

Every sampler Pilotfish offers (``always_on``, ``always_off``, ``traceidratio`` and their
``parentbased_`` forms, named like ``OTEL_TRACES_SAMPLER``) decides from the parent's
sampled flag and the trace id alone. ``SamplingRule`` computes that decision without the
SDK's call chain (context lookups, a ``SamplingResult`` per request), so a request that is
not sampled costs a comparison. The SDK sampler stays the authority for the spans the SDK
starts; a test pins that both always agree.
"""

from __future__ import annotations

from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

_ID_MASK = TraceIdRatioBased.TRACE_ID_LIMIT  # the ratio sampler reads the low 64 bits
_BASES = ("always_on", "always_off", "traceidratio")


class SamplingRule:
    __slots__ = ("bound", "parent_based")

    def __init__(self, name: str, arg: float) -> None:
        base = name.removeprefix("parentbased_")
        if base not in _BASES:
            raise ValueError(f"unknown sampler {name!r}")
        self.parent_based = name.startswith("parentbased_")
        if base == "always_on":
            self.bound = _ID_MASK + 1
        elif base == "always_off":
            self.bound = 0
        else:
            self.bound = TraceIdRatioBased.get_bound_for_rate(arg)

    def sampled(self, parent_sampled: bool | None, trace_id: int) -> bool:
        """Whether a span with this trace id is sampled, below a valid parent whose sampled
        flag is ``parent_sampled`` (``None``: a root)."""
        if self.parent_based and parent_sampled is not None:
            return parent_sampled
        return trace_id & _ID_MASK < self.bound
