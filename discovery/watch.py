"""``Watch``: the latest value of a source plus change notification.

A source calls ``publish`` with each new snapshot and ``fail`` when it cannot refresh.
A failure never clears the value: consumers keep the last good snapshot. ``publish`` of a
snapshot with the same content as the current one is not a change (no notification).
Subscribers are plain callables run synchronously on publish; they must not block.

An outage is told once when it starts and once when it ends, to ``on_outage``: by default
a log line (a warning, then an info line), which says what is served meanwhile — the last
endpoints, or none yet when the source never answered. Whoever composes the source may put
its own hook there instead (the sidecar publishes an event, which is logged once).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sized
from typing import Generic, NamedTuple, TypeVar

from discovery.model import EndpointSet

T = TypeVar("T")

log = logging.getLogger(__name__)


class Outage(NamedTuple):
    """A source's refreshes started failing (``failing``), or work again."""

    watch: str  # the watch's name, e.g. consul:payments
    failing: bool
    error: str | None  # why the refresh failed (None when it works again)
    endpoints: int | None  # how many the source serves now; None: it never had a snapshot

    def served(self) -> str:
        """What the source serves meanwhile, in words."""
        return served(self.endpoints)


def served(endpoints: int | None) -> str:
    if endpoints is None:
        return "no endpoints yet"
    if endpoints == 0:
        return "keeping the last answer, which listed no endpoints"
    return f"keeping the last {_count(endpoints)}"


def _count(n: int) -> str:
    return f"{n} endpoint" if n == 1 else f"{n} endpoints"


def log_outage(outage: Outage) -> None:
    if outage.failing:
        log.warning("%s: refresh failed, %s: %s", outage.watch, outage.served(), outage.error)
    else:
        log.info("%s: recovered, %s", outage.watch, _count(outage.endpoints or 0))


OutageHook = Callable[[Outage], None]


class Watch(Generic[T]):
    def __init__(
        self,
        name: str,
        same: Callable[[T, T], bool] | None = None,
        on_outage: OutageHook | None = log_outage,
    ) -> None:
        self.name = name
        self.on_outage = on_outage  # told when an outage starts and when it ends
        self._value: T | None = None
        self._same = same
        self._subscribers: list[Callable[[T], None]] = []
        self._first = asyncio.Event()
        self._changed = asyncio.Event()
        self.updates = 0  # number of published changes
        self.errors = 0  # number of failed refreshes
        self.last_error: str | None = None
        self.failing = False
        self.last_success: float | None = None  # wall-clock time.time() of last good refresh

    @property
    def value(self) -> T | None:
        return self._value

    @property
    def ready(self) -> bool:
        return self._value is not None

    def subscribe(self, callback: Callable[[T], None]) -> None:
        self._subscribers.append(callback)
        if self._value is not None:
            callback(self._value)

    def publish(self, value: T, now: float | None = None) -> bool:
        """Publish ``value``; returns True when it was a change."""
        recovering = self.failing
        self.failing = False
        self.last_error = None
        if now is not None:
            self.last_success = now
        old = self._value
        changed = old is None or self._same is None or not self._same(old, value)
        if changed:
            self._value = value
            self.updates += 1
            self._first.set()
            self._changed.set()
            self._changed = asyncio.Event()
            for callback in self._subscribers:
                callback(value)
        if recovering:
            self._tell(Outage(self.name, False, None, self._served()))
        return changed

    def fail(self, error: str) -> bool:
        """Record a failed refresh; returns True when this starts a new outage."""
        self.errors += 1
        self.last_error = error
        started = not self.failing
        self.failing = True
        if started:
            self._tell(Outage(self.name, True, error, self._served()))
        return started

    def _served(self) -> int | None:
        value = self._value
        if value is None:
            return None
        return len(value) if isinstance(value, Sized) else 1

    def _tell(self, outage: Outage) -> None:
        if self.on_outage is not None:
            self.on_outage(outage)

    async def wait_ready(self) -> T:
        await self._first.wait()
        assert self._value is not None
        return self._value

    async def wait_changed(self) -> T:
        await self._changed.wait()
        assert self._value is not None
        return self._value


def endpoint_watch(name: str, on_outage: OutageHook | None = log_outage) -> Watch[EndpointSet]:
    return Watch(name, same=lambda a, b: a.same_content(b), on_outage=on_outage)
