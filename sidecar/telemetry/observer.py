"""``Observer``: the only way the request path reports what happened.

The pipeline calls these hooks at fixed points; an implementation turns them into spans,
metrics and access-log lines. ``NullObserver`` does nothing and is what runs when all
telemetry is off. Hooks must be cheap and must never raise into the request path.

Call order for one downstream request:
``request_start`` → (per physical attempt: ``attempt_start`` → ``attempt_end``)* →
``request_end``. ``event`` may be called in between for a decision the sidecar made
(retry, retry_budget_exhausted, breaker_rejected, ring_hash_fallback, panic, ejection).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from resilience.outcome import Outcome

if TYPE_CHECKING:
    from sidecar.cluster import Cluster, EndpointState
    from sidecar.listener.request import DownstreamRequest
    from sidecar.pipeline.exchange import Exchange


class Observer(Protocol):
    def request_start(self, listener: str, request: DownstreamRequest) -> Any:
        """Returns a per-request context (kept as ``Exchange.span``)."""

    def request_end(
        self,
        ctx: Any,
        listener: str,
        request: DownstreamRequest,
        ex: Exchange | None,
        status: int,
        error: str | None,
        bytes_out: int,
    ) -> None: ...

    def attempt_start(self, ex: Exchange, cluster: Cluster, state: EndpointState) -> Any:
        """Called right before a physical attempt at ``state``; may add headers
        (traceparent) to ``ex.headers``. Returns a per-attempt token."""

    def attempt_end(
        self, token: Any, ex: Exchange, outcome: Outcome, status: int | None, error: str | None
    ) -> None:
        """Called once when the attempt is settled (at its failure, or when its response
        body ended)."""

    def event(
        self, ex: Exchange | None, cluster: str, name: str, attributes: dict[str, Any]
    ) -> None: ...


class NullObserver:
    __slots__ = ()

    def request_start(self, listener: str, request: DownstreamRequest) -> Any:
        return None

    def request_end(
        self,
        ctx: Any,
        listener: str,
        request: DownstreamRequest,
        ex: Exchange | None,
        status: int,
        error: str | None,
        bytes_out: int,
    ) -> None:
        return None

    def attempt_start(self, ex: Exchange, cluster: Cluster, state: EndpointState) -> Any:
        return None

    def attempt_end(
        self, token: Any, ex: Exchange, outcome: Outcome, status: int | None, error: str | None
    ) -> None:
        return None

    def event(
        self, ex: Exchange | None, cluster: str, name: str, attributes: dict[str, Any]
    ) -> None:
        return None


NULL_OBSERVER = NullObserver()
