"""Stand-ins for what surrounds one layer: a cluster of endpoints on a fake clock, an
observer that writes down what it is told, scripted inner handlers and responses."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import yaml

from discovery.model import Endpoint, EndpointSet
from resilience.clock import FakeClock
from resilience.outcome import Outcome
from sidecar.cluster import Cluster, EndpointState
from sidecar.config.load import load_text
from sidecar.pipeline.exchange import Exchange
from sidecar.transport.request_head import RequestHead

MEMBERS = [Endpoint("127.0.0.1", 9000 + i) for i in range(3)]


def cluster(clock: FakeClock | None = None, **policies: Any) -> Cluster:
    doc = {
        "service": {"name": "t", "port": 1},
        "upstreams": [
            {"name": "api", "listen": "127.0.0.1:0", "discovery": {"static": ["a:1"]}, **policies}
        ],
    }
    config = load_text(yaml.safe_dump(doc), environ={}).upstreams[0]
    c = Cluster.from_config(config, clock=clock or FakeClock(), rng=random.Random(1))
    c.update(EndpointSet.of(MEMBERS, source="static"))
    return c


class Recorder:
    """An observer that keeps every hook call."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def attempt_start(self, ex: Exchange, cluster: Cluster, state: EndpointState) -> Any:
        self.calls.append(("start", state.id))
        return state.id

    def attempt_end(
        self, token: Any, ex: Exchange, outcome: Outcome, status: int | None, error: str | None
    ) -> None:
        self.calls.append(("end", token, outcome, status, error))

    def event(self, ex: Exchange | None, cluster: str, name: str, attributes: dict) -> None:
        self.calls.append(("event", name))

    def ends(self) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == "end"]


def exchange(body: Any = None, method: str = "GET", replayable: bool = True) -> Exchange:
    ex = Exchange(RequestHead.of(method, "/"), body, replayable, "127.0.0.1", "rid", None)
    ex.task = asyncio.current_task()
    return ex


class Response:
    """An upstream response whose body has ended (or not) when its reader says so."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.reason = ""
        self.fields: list[tuple[bytes, bytes]] = []
        self.content_length = 0
        self.end: Any = None
        self.closed = False

    def watch(self, end: Any) -> None:
        self.end = end

    def release(self) -> None:
        if self.end is not None:
            self.end.ended()

    def close(self) -> None:
        self.closed = True
        if self.end is not None:
            self.end.abandoned()


Inner = Callable[[Exchange], Awaitable[Any]]
