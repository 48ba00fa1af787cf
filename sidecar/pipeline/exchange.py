"""``Exchange``: one downstream request on its way upstream, and its ``Attempt``\\ s.

The exchange is the request as it will be sent (its ``head``: method, path and header
fields as bytes; its body), what routed it (its ``route``), its deadline, and the attempts
made for it. ``trace_fields`` are written behind the head by each attempt (the observer
sets them: the trace context naming that attempt). Policy settings are not
here: each layer of the cluster's stack holds its own.

An ``Attempt`` is one physical try at one endpoint, from its admission to its settlement.
It is settled exactly once, with one ``Outcome``, and only then do the endpoint's breaker,
the outlier detector, the least-request count and the observer learn how it went:

- it failed before an answer (refused, reset, per-try timeout): settled at once with that
  failure; the total deadline firing while it waited is a timeout too (Envoy charges it
  to the endpoint alike, since every timer starts only once the request is complete);
- it was cancelled before an answer because the client left: ``CANCELLED``;
- it was answered: the status is classified (success, 5xx) but the attempt stays open
  while the response body streams, and is settled by the response (it is the
  ``ResponseEnd`` the transport's response reports to) — when the body ends (as
  classified), when the body breaks (a reset or stall: the endpoint's failure), or when
  the body is abandoned (a retry dropping a 5xx keeps the 5xx; a client leaving a good
  answer half-read is ``CANCELLED``, never charged to the endpoint).

Invariants: once settled an attempt lets go of its exchange, so a finished request is
freed by reference counting alone (no cycle is left for the collector).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from resilience.outcome import Outcome

if TYPE_CHECKING:
    import asyncio

    from resilience.breaker import Permit
    from resilience.deadline import Deadline
    from sidecar.cluster import Cluster, EndpointState
    from sidecar.pipeline.errors import ProxyError
    from sidecar.pipeline.timeouts import Ticket
    from sidecar.transport.request_head import RequestHead
    from sidecar.tunnel import Tunnel


class AttemptObserver(Protocol):
    """The part of the ``Observer`` an attempt reports to."""

    def attempt_start(self, ex: Exchange, cluster: Cluster, state: EndpointState) -> Any: ...

    def attempt_end(
        self, token: Any, ex: Exchange, outcome: Outcome, status: int | None, error: str | None
    ) -> None: ...


class Exchange:
    __slots__ = (
        "attempts",
        "body",
        "client_ip",
        "deadline",
        "deadline_ticket",
        "flags",
        "hash_key",
        "head",
        "method",
        "path",
        "replayable",
        "request_id",
        "route",
        "span",
        "task",
        "trace_fields",
        "tried",
        "tunnel",
    )

    def __init__(
        self,
        head: RequestHead,
        body: Any,
        replayable: bool,
        client_ip: str,
        request_id: str,
        route: Any,
        span: Any = None,
    ) -> None:
        self.head = head  # the request line and header fields as sent upstream
        self.method = head.method
        self.path = head.path  # path + query as sent upstream
        self.trace_fields = b""  # the trace context of the attempt under way
        self.body = body  # None, bytes (buffered, replayable) or a stream (sent once)
        self.replayable = replayable
        self.client_ip = client_ip
        self.request_id = request_id
        self.route = route  # what routed it (sidecar.proxy.Route): its cluster and rules
        self.span = span  # the observer's per-request context
        self.hash_key: str | None = None
        self.deadline: Deadline | None = None  # from the moment the request is complete
        self.deadline_ticket: Ticket | None = None
        self.attempts: list[Attempt] = []
        self.tried: list[EndpointState] = []  # endpoints tried, or skipped at their breaker
        self.flags = ""  # Envoy response flags: UH, UF, UT, UO, URX, ...
        self.task: asyncio.Task[Any] | None = None  # the task serving it, for timeouts
        self.tunnel: Tunnel | None = None  # after a 101: the upgraded connection

    @property
    def last(self) -> Attempt | None:
        attempts = self.attempts
        return attempts[-1] if attempts else None

    def add_flag(self, flag: str) -> None:
        if flag not in self.flags.split(","):
            self.flags = f"{self.flags},{flag}" if self.flags else flag


class Attempt:
    __slots__ = (
        "_observer",
        "_permit",
        "_token",
        "cluster",
        "ex",
        "outcome",
        "settled",
        "state",
        "status",
    )

    def __init__(
        self,
        ex: Exchange,
        cluster: Cluster,
        state: EndpointState,
        permit: Permit | None,
        observer: AttemptObserver,
    ) -> None:
        self.ex: Exchange | None = ex
        self.cluster = cluster
        self.state = state
        self._permit = permit
        self._observer = observer
        self.outcome = Outcome.CANCELLED  # until an answer or a failure says otherwise
        self.status: int | None = None
        self.settled = False
        state.in_flight += 1
        ex.attempts.append(self)
        ex.tried.append(state)
        self._token = observer.attempt_start(ex, cluster, state)  # observer hook

    def answered(self, status: int, outcome: Outcome) -> None:
        """The status line arrived; the body may still be streaming."""
        self.status = status
        self.outcome = outcome

    def settle(self, outcome: Outcome, error: str | None = None) -> None:
        ex = self.ex
        if self.settled or ex is None:
            return
        self.settled = True
        self.outcome = outcome
        state = self.state
        state.in_flight -= 1
        permit = self._permit
        if permit is not None:
            permit.record(outcome)
        self.cluster.record(state, outcome)
        self._observer.attempt_end(self._token, ex, outcome, self.status, error)
        self.ex = None  # the exchange refers to its attempts: no cycle outlives the request

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
