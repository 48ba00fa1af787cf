"""``Watch``: the latest value of a source plus change notification.

A source calls ``publish`` with each new snapshot and ``fail`` when it cannot refresh.
A failure never clears the value: consumers keep the last good snapshot. ``publish`` of a
snapshot with the same content as the current one is not a change (no notification).
Subscribers are plain callables run synchronously on publish; they must not block.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

from discovery.model import EndpointSet

T = TypeVar("T")


class Watch(Generic[T]):
    def __init__(self, name: str, same: Callable[[T, T], bool] | None = None) -> None:
        self.name = name
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
        self.failing = False
        self.last_error = None
        if now is not None:
            self.last_success = now
        old = self._value
        if old is not None and self._same is not None and self._same(old, value):
            return False
        self._value = value
        self.updates += 1
        self._first.set()
        self._changed.set()
        self._changed = asyncio.Event()
        for callback in self._subscribers:
            callback(value)
        return True

    def fail(self, error: str) -> bool:
        """Record a failed refresh; returns True when this starts a new outage."""
        self.errors += 1
        self.last_error = error
        started = not self.failing
        self.failing = True
        return started

    async def wait_ready(self) -> T:
        await self._first.wait()
        assert self._value is not None
        return self._value

    async def wait_changed(self) -> T:
        await self._changed.wait()
        assert self._value is not None
        return self._value


def endpoint_watch(name: str) -> Watch[EndpointSet]:
    return Watch(name, same=lambda a, b: a.same_content(b))
