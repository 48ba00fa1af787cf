"""``Attempt``: one physical attempt at one endpoint, from its admission to its settlement.

An attempt is settled exactly once, with one ``Outcome``, and only then do the endpoint's
breaker, the outlier detector, the least-request count and the observer (span, metrics)
learn how it went. When it is settled depends on how far it got:

- it failed before an answer (refused, reset, per-try timeout): settled at once with that
  failure; the total deadline firing while it waited is a timeout too (Envoy charges it
  to the endpoint alike, since every timer starts only once the request is complete);
- it was cancelled before an answer because the client left: ``CANCELLED``;
- it was answered: the status is classified (success, 5xx) but the attempt stays open
  while the response body streams, and is settled by the response — when the body ends
  (as classified), when the body breaks (a reset or stall: the endpoint's failure), or
  when the body is abandoned (a retry dropping a 5xx keeps the 5xx; a client leaving a
  good answer half-read is ``CANCELLED``, never charged to the endpoint).

It is the ``ResponseEnd`` that the transport's response reports to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from resilience.outcome import Outcome

if TYPE_CHECKING:
    from resilience.breaker import Permit
    from sidecar.cluster import Cluster, EndpointState
    from sidecar.pipeline.errors import ProxyError
    from sidecar.pipeline.exchange import Exchange


class Attempt:
    __slots__ = ("_permit", "_token", "cluster", "ex", "outcome", "settled", "state", "status")

    def __init__(self, ex: Exchange, state: EndpointState, permit: Permit | None) -> None:
        self.ex = ex
        self.cluster: Cluster = ex.cluster
        self.state = state
        self._permit = permit
        self.outcome = Outcome.CANCELLED  # until an answer or a failure says otherwise
        self.status: int | None = None
        self.settled = False
        state.in_flight += 1
        self._token = ex.observer.attempt_start(ex)  # observer hook

    def answered(self, status: int, outcome: Outcome) -> None:
        """The status line arrived; the body may still be streaming."""
        self.status = status
        self.outcome = outcome

    def settle(self, outcome: Outcome, error: str | None = None) -> None:
        if self.settled:
            return
        self.settled = True
        self.outcome = outcome
        state = self.state
        state.in_flight -= 1
        permit = self._permit
        if permit is not None:
            permit.record(outcome)
        self.cluster.record(state, outcome)
        ex = self.ex
        ex.observer.attempt_end(self._token, ex, outcome, self.status, error)
        self.ex = None  # type: ignore[assignment]  # the exchange refers to its attempt

    # -- ResponseEnd: what the response reports -------------------------------------------

    def ended(self) -> None:
        """The response body arrived whole."""
        self.settle(self.outcome)

    def failed(self, error: ProxyError) -> None:
        """The response body broke (reset, stall, invalid framing)."""
        self.settle(error.outcome, error.reason)

    def abandoned(self) -> None:
        """The response was dropped before its end."""
        if self.outcome.counts_against_endpoint:
            self.settle(self.outcome)  # a 5xx a retry replaces is still a 5xx
        else:
            self.settle(Outcome.CANCELLED, "cancelled")
