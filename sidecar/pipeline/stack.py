"""The one place where the outbound layers are put in order.

Outermost first: Deadline → Retry → Pick → Endpoint → PerTryTimeout → Transport.
``LAYER_ORDER`` names that order; a test pins it.
"""

from __future__ import annotations

import random

from resilience.clock import Clock
from sidecar.pipeline.layers import (
    DeadlineLayer,
    EndpointLayer,
    Handler,
    PerTryTimeoutLayer,
    PickLayer,
    RetryLayer,
    TransportLayer,
)
from sidecar.pipeline.timeouts import TimeoutQueues

LAYER_ORDER = ("deadline", "retry", "pick", "endpoint", "per_try_timeout", "transport")


def build_stack(*, clock: Clock, rng: random.Random) -> Handler:
    timeouts = TimeoutQueues()
    handler: Handler = TransportLayer()
    handler = PerTryTimeoutLayer(handler, timeouts)
    handler = EndpointLayer(handler)
    handler = PickLayer(handler)
    handler = RetryLayer(handler, rng)
    handler = DeadlineLayer(handler, clock, timeouts)
    return handler


def layers_of(handler: Handler) -> list[str]:
    """Names of the layers from outermost to innermost, read off a built stack."""
    names = []
    current: object | None = handler
    while current is not None:
        names.append(_NAMES[type(current)])
        current = getattr(current, "inner", None)
    return names


_NAMES = {
    DeadlineLayer: "deadline",
    RetryLayer: "retry",
    PickLayer: "pick",
    EndpointLayer: "endpoint",
    PerTryTimeoutLayer: "per_try_timeout",
    TransportLayer: "transport",
}
