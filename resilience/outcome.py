"""The one classification of an upstream attempt.

Every attempt ends in exactly one ``Outcome``. The breaker, the outlier detector, the
retry policy, metrics and spans all read this value; nothing else re-derives it.
A ``LOCAL_REJECTION`` (breaker open, budget empty, overflow, no endpoint, a request the
client broke) is the sidecar's own decision, and ``CANCELLED`` an attempt the client
abandoned (it left, or stopped reading): neither says anything of the endpoint.
"""

from __future__ import annotations

import enum


class Outcome(enum.Enum):
    SUCCESS = "success"
    HTTP_5XX = "http_5xx"  # a 5xx other than 502/503/504
    GATEWAY_ERROR = "gateway_error"  # 502, 503, 504 from the upstream
    CONNECT_FAILURE = "connect_failure"
    RESET = "reset"
    TIMEOUT = "timeout"
    LOCAL_REJECTION = "local_rejection"
    CANCELLED = "cancelled"

    @property
    def is_failure(self) -> bool:
        return self is not Outcome.SUCCESS

    @property
    def is_local_origin(self) -> bool:
        """A failure seen on the connection, not in an HTTP status (Envoy's local-origin)."""
        return self in _LOCAL_ORIGIN

    @property
    def counts_against_endpoint(self) -> bool:
        return (
            self is not Outcome.SUCCESS
            and self is not Outcome.LOCAL_REJECTION
            and self is not Outcome.CANCELLED
        )

    @property
    def judges_endpoint(self) -> bool:
        """Whether the endpoint earned this outcome (success or failure alike)."""
        # Identity tests: an enum member's hash (for a set lookup) is a Python-level call.
        return self is not Outcome.LOCAL_REJECTION and self is not Outcome.CANCELLED

    @property
    def is_5xx(self) -> bool:
        return self is Outcome.HTTP_5XX or self is Outcome.GATEWAY_ERROR


_LOCAL_ORIGIN = frozenset({Outcome.CONNECT_FAILURE, Outcome.RESET, Outcome.TIMEOUT})


def classify_status(status: int) -> Outcome:
    """Outcome of an attempt that produced an HTTP response with ``status``."""
    if status < 500:
        return Outcome.SUCCESS
    if status in (502, 503, 504):
        return Outcome.GATEWAY_ERROR
    return Outcome.HTTP_5XX
