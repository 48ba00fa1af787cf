"""State changes of the running sidecar, as events: published once, read by whoever listens.

Whatever changes state — a cluster added or changed by a reload, an endpoint joining,
leaving, ejected or back, its health verdict, its breaker, a cluster's panic, its discovery
failing or working again, a reload applied or refused, the sidecar turning ready or not —
publishes one ``Event`` on the sidecar's ``EventBus``. The log, the
metrics and the admin page subscribe; the publishers know none of them. Every event is
logged exactly once, at the level its kind says (``LEVELS``), and the last ``HISTORY`` are
kept for the admin listener.

Invariants: publishing never raises into the publisher (a subscriber's failure is logged
and the others still run); events are delivered in publication order, synchronously, so a
subscriber sees the state that caused it.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

log = logging.getLogger("pilotfish.events")

HISTORY = 256
INFO, WARNING = logging.INFO, logging.WARNING

# kind -> (level, how the log line reads after its subject)
KINDS: dict[str, tuple[int, str]] = {
    "cluster_added": (INFO, "added"),
    "cluster_removed": (INFO, "removed"),
    "cluster_changed": (INFO, "changed"),
    "cluster_ready": (INFO, "has its first endpoint list"),
    "endpoint_added": (INFO, "added"),
    "endpoint_removed": (INFO, "removed"),
    "endpoint_ejected": (WARNING, "ejected"),
    "endpoint_returned": (INFO, "back from ejection"),
    "endpoint_unhealthy": (WARNING, "unhealthy"),
    "endpoint_healthy": (INFO, "healthy"),
    "breaker_opened": (WARNING, "breaker opened"),
    "breaker_half_open": (INFO, "breaker half open"),
    "breaker_closed": (INFO, "breaker closed"),
    "panic_entered": (WARNING, "in panic: too few endpoints available, balancing over all"),
    "panic_left": (INFO, "out of panic"),
    "discovery_failing": (WARNING, "discovery failing"),
    "discovery_recovered": (INFO, "discovery recovered"),
    "reload_applied": (INFO, "applied"),
    "reload_refused": (WARNING, "refused"),
    "ready": (INFO, "ready"),  # /ready turned 200
    "not_ready": (WARNING, "not ready"),  # /ready turned 503 (or is 503 at the end of start)
    "draining": (INFO, "not ready"),  # /ready turned 503 because the sidecar is stopping
}
LEVELS = {kind: level for kind, (level, _) in KINDS.items()}
_SIDECAR_KINDS = frozenset(("ready", "not_ready", "draining"))


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # one of KINDS
    cluster: str | None = None
    endpoint: str | None = None  # its id, host:port
    detail: str = ""
    at: float = field(default_factory=time.time)
    # Machine-readable facts for subscribers (an ejection's reason, say); not logged.
    attributes: Mapping[str, object] = field(default_factory=dict)
    endpoint_name: str | None = None  # what discovery calls the endpoint, when not its id

    @property
    def subject(self) -> str:
        if self.kind.startswith("reload"):
            return "reload"
        if self.kind in _SIDECAR_KINDS:
            return "pilotfish"
        if self.endpoint is not None:
            if self.endpoint_name and self.endpoint_name != self.endpoint:
                return f"endpoint {self.endpoint_name} ({self.endpoint}) of {self.cluster}"
            return f"endpoint {self.endpoint} of {self.cluster}"
        return f"upstream {self.cluster}"

    def message(self) -> str:
        text = f"{self.subject} {KINDS[self.kind][1]}"
        return f"{text}: {self.detail}" if self.detail else text

    def as_dict(self) -> dict[str, object]:
        return {
            "at": self.at,
            "kind": self.kind,
            "cluster": self.cluster,
            "endpoint": self.endpoint,
            "endpoint_name": self.endpoint_name or self.endpoint,
            "detail": self.detail,
            "message": self.message(),
        }


Subscriber = Callable[[Event], None]


class EventBus:
    def __init__(self, history: int = HISTORY) -> None:
        self._subscribers: list[Subscriber] = [log_event]
        self.history: deque[Event] = deque(maxlen=history)

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def publish(
        self,
        kind: str,
        *,
        cluster: str | None = None,
        endpoint: str | None = None,
        endpoint_name: str | None = None,
        detail: str = "",
        **attributes: object,
    ) -> Event:
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        event = Event(
            kind, cluster, endpoint, detail, attributes=attributes, endpoint_name=endpoint_name
        )
        self.history.append(event)
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception:  # one listener's bug must not cost the others, or the publisher
                log.exception("event subscriber failed on %s", kind)
        return event


def log_event(event: Event) -> None:
    log.log(LEVELS[event.kind], "%s", event.message())


# A bus that keeps nothing and logs: what a cluster publishes to when nobody composed one
# (tests of a lone cluster, the simulator).
def quiet_bus() -> EventBus:
    bus = EventBus(history=0)
    bus._subscribers.clear()
    return bus
