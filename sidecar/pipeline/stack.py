"""The one place where a cluster's outbound layers are put in order.

Outermost first: Deadline → Retry → Attempt. ``LAYER_ORDER`` names that order; a test
pins it. Each cluster gets its own stack, built from its own settings: a policy that is
off is not in it (no total timeout: no Deadline layer; no retries: no Retry layer; no
per-try timeout: the Attempt layer arms no timer), so it costs nothing per request. A
changed policy means a new stack; requests in flight finish on the one they started with.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from resilience.budget import RetryBudget
from resilience.clock import Clock
from resilience.retry import RetryPolicy
from sidecar.pipeline.layers import (
    AttemptLayer,
    DeadlineLayer,
    Handler,
    LayerObserver,
    RetryLayer,
)
from sidecar.pipeline.timeouts import TimeoutQueues
from sidecar.transport.base import Transport

if TYPE_CHECKING:
    from sidecar.cluster import Cluster
    from sidecar.config.schema import UpstreamConfig

LAYER_ORDER = ("deadline", "retry", "attempt")


@dataclass(frozen=True, slots=True)
class StackSettings:
    """A cluster's request-path policies; ``None`` or ``0`` turns one off."""

    total: float  # seconds; 0: no total deadline
    per_try: float | None  # seconds; None: no per-try timeout
    retry: RetryPolicy | None  # None: no retries
    budget: RetryBudget | None

    @classmethod
    def of(cls, upstream: UpstreamConfig, budget: RetryBudget | None) -> StackSettings:
        """The settings an upstream's configuration asks for (``budget``: its cluster's)."""
        r = upstream.retries
        policy = (
            RetryPolicy(
                attempts=r.attempts,
                retry_on=frozenset(r.retry_on),
                retriable_status_codes=frozenset(r.retriable_status_codes),
                backoff_base=r.backoff.base,
                backoff_max=r.backoff.max,
            )
            if r.attempts
            else None
        )
        return cls(upstream.timeouts.total, r.per_try_timeout or None, policy, budget)


def build_stack(
    cluster: Cluster,
    transport: Transport,
    settings: StackSettings,
    *,
    clock: Clock,
    rng: random.Random,
    observer: LayerObserver,
    timeouts: TimeoutQueues,
) -> Handler:
    handler: Handler = AttemptLayer(cluster, transport, observer, settings.per_try, timeouts)
    if settings.retry is not None and settings.retry.attempts and settings.budget is not None:
        handler = RetryLayer(handler, settings.retry, settings.budget, rng, cluster.name, observer)
    if settings.total:
        handler = DeadlineLayer(handler, settings.total, clock, timeouts)
    return handler


def layers_of(handler: Handler) -> list[str]:
    """Names of the layers from outermost to innermost, read off a built stack."""
    names = []
    current: object | None = handler
    while current is not None:
        names.append(_NAMES[type(current)])
        current = getattr(current, "inner", None)
    return names


_NAMES = {DeadlineLayer: "deadline", RetryLayer: "retry", AttemptLayer: "attempt"}
