"""``Exchange``: one downstream request on its way through the pipeline.

It carries what the layers need (the request as it will be sent upstream, the cluster,
the deadline) and what they decide (endpoints tried, attempts, the last outcome, Envoy-style
response flags). One is allocated per request; slots keep it small.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from multidict import CIMultiDict

from resilience.outcome import Outcome

if TYPE_CHECKING:
    import asyncio

    from resilience.deadline import Deadline
    from sidecar.cluster import Cluster, EndpointState
    from sidecar.pipeline.attempt import Attempt
    from sidecar.pipeline.timeouts import Ticket
    from sidecar.telemetry.observer import Observer
    from sidecar.tunnel import Tunnel


class Exchange:
    __slots__ = (
        "attempt",
        "attempts",
        "body",
        "client_ip",
        "cluster",
        "deadline",
        "deadline_ticket",
        "endpoint",
        "flags",
        "hash_key",
        "headers",
        "method",
        "observer",
        "outcome",
        "path",
        "replayable",
        "request_id",
        "span",
        "status",
        "task",
        "tried",
        "tunnel",
    )

    def __init__(
        self,
        method: str,
        path: str,
        headers: CIMultiDict[str],
        body: Any,
        replayable: bool,
        client_ip: str,
        request_id: str,
        cluster: Cluster,
        observer: Observer,
        span: Any = None,
    ) -> None:
        self.method = method
        self.path = path  # path + query as sent upstream
        self.headers = headers  # upstream request headers, already filtered
        self.body = body  # None, bytes (buffered, replayable) or a stream (sent once)
        self.replayable = replayable
        self.client_ip = client_ip
        self.request_id = request_id
        self.cluster = cluster
        self.hash_key: str | None = None
        self.deadline: Deadline | None = None  # from the moment the request is complete
        self.deadline_ticket: Ticket | None = None
        self.attempt: Attempt | None = None  # the latest
        self.attempts = 0
        self.tried: list[EndpointState] = []
        self.endpoint: EndpointState | None = None
        self.outcome: Outcome | None = None
        self.status = 0
        self.flags = ""  # Envoy response flags: UH, UF, UT, UO, URX, ...
        self.observer = observer
        self.span = span  # the observer's per-request context
        self.task: asyncio.Task[Any] | None = None  # the task serving it, for timeouts
        self.tunnel: Tunnel | None = None  # after a 101: the upgraded connection

    def add_flag(self, flag: str) -> None:
        if flag not in self.flags.split(","):
            self.flags = f"{self.flags},{flag}" if self.flags else flag
