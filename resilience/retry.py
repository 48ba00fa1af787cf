"""Whether and when to retry a failed attempt, as a value.

``RetryPolicy.decide`` looks at one finished attempt and returns ``RetryAfter(delay)`` or
``GiveUp(reason)``. It knows nothing of budgets, endpoints or sockets: the shell checks the
retry budget after a ``RetryAfter``, sleeps, and picks an endpoint.

Conditions follow Envoy's ``retry_on`` names:

* ``connect-failure`` — the connection could not be made (nothing was sent).
* ``reset`` — the upstream reset or closed the connection without a response.
* ``timeout`` — the per-try timeout fired.
* ``gateway-error`` — the upstream answered 502, 503 or 504, or the per-try timeout fired
  (the sidecar's own 504, as in Envoy).
* ``5xx`` — any 5xx answer, and also connect failures, resets and per-try timeouts
  (Envoy: "or does not respond at all").
* ``retriable-status-codes`` — the status is in ``retriable_status_codes``.

Safety rules, checked after the condition matched and attempts remain:

* A body that cannot be sent again (``replayable=False``) is never retried, whatever the
  failure: a streamed body already consumed by the first attempt is gone.
* Only idempotent methods are retried, except after a connect failure: the upstream never
  saw that request, so repeating it cannot repeat a side effect.
* A backoff delay that leaves no time before the deadline gives up instead.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from resilience.backoff import full_jitter
from resilience.outcome import Outcome

RETRY_ON_NAMES = frozenset(
    {"connect-failure", "reset", "timeout", "gateway-error", "5xx", "retriable-status-codes"}
)
DEFAULT_RETRY_ON = frozenset(
    {"connect-failure", "reset", "gateway-error", "retriable-status-codes"}
)
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

# Which retry_on names make a failure without a response retriable.
_NO_RESPONSE_CONDITIONS: dict[Outcome, frozenset[str]] = {
    Outcome.CONNECT_FAILURE: frozenset({"connect-failure", "5xx"}),
    Outcome.RESET: frozenset({"reset", "5xx"}),
    # Envoy answers an expired per-try timeout with a 504 and retries it as a gateway error.
    Outcome.TIMEOUT: frozenset({"timeout", "5xx", "gateway-error"}),
}


@dataclass(frozen=True, slots=True)
class RetryAfter:
    delay: float


GiveUpReason = Literal[
    "not_retriable",
    "attempts_exhausted",
    "method_not_idempotent",
    "body_not_replayable",
    "deadline",
]


@dataclass(frozen=True, slots=True)
class GiveUp:
    reason: GiveUpReason


RetryDecision = RetryAfter | GiveUp


def parse_retry_on(names: str | Iterable[str]) -> frozenset[str]:
    """Validate ``retry_on`` names; a string is split on commas like Envoy's header."""
    if isinstance(names, str):
        names = names.split(",")
    cleaned = frozenset(n.strip() for n in names if n.strip())
    unknown = cleaned - RETRY_ON_NAMES
    if unknown:
        raise ValueError(
            f"unknown retry_on condition(s) {', '.join(sorted(unknown))}; "
            f"valid: {', '.join(sorted(RETRY_ON_NAMES))}"
        )
    return cleaned


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 2
    """Retries after the first try."""
    retry_on: frozenset[str] = DEFAULT_RETRY_ON
    retriable_status_codes: frozenset[int] = frozenset()
    idempotent_methods: frozenset[str] = IDEMPOTENT_METHODS
    backoff_base: float = 0.025
    backoff_max: float = 0.25

    def __post_init__(self) -> None:
        # Accept any iterable from configuration but keep frozensets inside.
        object.__setattr__(self, "retry_on", parse_retry_on(self.retry_on))
        object.__setattr__(self, "retriable_status_codes", frozenset(self.retriable_status_codes))
        object.__setattr__(self, "idempotent_methods", frozenset(self.idempotent_methods))
        if self.attempts < 0:
            raise ValueError(f"attempts must be >= 0, got {self.attempts}")
        if self.backoff_base <= 0 or self.backoff_max < self.backoff_base:
            raise ValueError("need 0 < backoff_base <= backoff_max")

    def is_retriable(self, outcome: Outcome, status: int | None) -> bool:
        """Whether ``retry_on`` covers this attempt's failure."""
        if not outcome.judges_endpoint:
            return False  # the sidecar's own refusal or the client's doing, not the upstream
        retry_on = self.retry_on
        if "retriable-status-codes" in retry_on and status in self.retriable_status_codes:
            return True
        if outcome in _NO_RESPONSE_CONDITIONS:
            return not retry_on.isdisjoint(_NO_RESPONSE_CONDITIONS[outcome])
        if outcome is Outcome.GATEWAY_ERROR:
            return "5xx" in retry_on or "gateway-error" in retry_on
        if outcome is Outcome.HTTP_5XX:
            return "5xx" in retry_on
        return False

    def decide(
        self,
        *,
        outcome: Outcome,
        status: int | None,
        method: str,
        retries_done: int,
        replayable: bool,
        remaining: float,
        rng: random.Random,
    ) -> RetryDecision:
        """What to do after an attempt ended with ``outcome`` (``status`` if a response came)."""
        if not self.is_retriable(outcome, status):
            return GiveUp("not_retriable")
        if retries_done >= self.attempts:
            return GiveUp("attempts_exhausted")
        if not replayable:
            return GiveUp("body_not_replayable")
        if outcome is not Outcome.CONNECT_FAILURE and method not in self.idempotent_methods:
            return GiveUp("method_not_idempotent")
        delay = full_jitter(retries_done + 1, self.backoff_base, self.backoff_max, rng)
        if delay >= remaining:
            return GiveUp("deadline")
        return RetryAfter(delay)
