"""Whether the sidecar is ready, why not, and the one line logged when that changes.

``not_ready_because`` is the rule ``/ready`` answers by (and ``pilotfish_ready`` reads):
ready once started, while not draining, when every routed upstream has had a first
endpoint list. An upstream a reload is still adding is not routed yet, so it cannot make a
ready sidecar unready before the reload has waited for it; an upstream whose discovery a
reload replaced keeps routing with the endpoints it has, so it stays ready meanwhile.

``ReadinessLog`` publishes an event each time that answer turns: ``ready`` when ``/ready``
turns 200, ``not_ready`` with the reason when it turns 503, ``draining`` when it does so
because the sidecar is stopping; and once at the end of start, whichever it is then. The
event is logged once, like every event. It looks again after every apply and stop, and when
an upstream gets its first endpoint list — never on a timer.

Invariants: nothing is published before start has finished, or twice in a row for the
same answer; the reason is computed by the same function ``/ready`` uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from sidecar.events import Event, EventBus


def not_ready_because(*, started: bool, draining: bool, waiting: Iterable[str]) -> str | None:
    """Why ``/ready`` answers 503, or None when it answers 200."""
    if draining:
        return "draining"
    names = list(waiting)
    if names:
        return f"waiting for endpoints of: {', '.join(names)}"
    if not started:
        return "starting"
    return None


class ReadinessLog:
    def __init__(
        self,
        reason: Callable[[], str | None],
        events: EventBus,
        *,
        ready_detail: Callable[[], str] = lambda: "",
    ) -> None:
        self._reason = reason
        self._events = events
        self._ready_detail = ready_detail
        self._ready: bool | None = None  # what was told last; None: nothing yet
        events.subscribe(self._on_event)

    def started(self) -> None:
        """Start has finished: tell where readiness stands, and follow it from now on."""
        self._tell(self._reason())

    def check(self) -> None:
        """Tell if ``/ready`` would now answer otherwise than last told."""
        if self._ready is None:
            return
        why = self._reason()
        if (why is None) != self._ready:
            self._tell(why)

    def _tell(self, why: str | None) -> None:
        self._ready = why is None
        if why is None:
            self._events.publish("ready", detail=self._ready_detail())
        elif why == "draining":
            self._events.publish("draining", detail=why)
        else:
            self._events.publish("not_ready", detail=why)

    def _on_event(self, event: Event) -> None:
        # A first endpoint list arrives inside the discovery watch's publish: look once the
        # cluster has taken it in and the other subscribers have seen the event.
        if event.kind == "cluster_ready" and self._ready is not None:
            asyncio.get_running_loop().call_soon(self.check)
