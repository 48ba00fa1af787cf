"""``Reloader``: read the config file again and apply it, on SIGHUP or ``POST /reload``.

The file is read and its ``${VAR}`` references expanded again (from the environment as it
is now), then checked exactly as ``pilotfish check-config`` checks it. A file with errors is
refused: each error is logged with its path, a ``reload_refused`` event is published, and
the running configuration stays as it was. A valid one is handed to ``apply`` (the
sidecar's), whose one-line summary of what changed is published as ``reload_applied``.

Reloads asked for while one is being applied are coalesced: they are served together by
one more run, which reads the file when it starts, so the last file written wins and a
burst of signals costs at most two applies. Every caller gets the result of the run that
began after it asked.

Invariants: at most one apply runs at a time; a failure of ``apply`` itself (a listener
that cannot bind, a fault of ours) is a refused reload, never a crash of the sidecar.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import NamedTuple

from sidecar.config.load import ConfigError, load_file
from sidecar.config.schema import Config
from sidecar.control.listeners import StartError
from sidecar.events import EventBus

log = logging.getLogger("pilotfish.reload")


class ReloadOutcome(NamedTuple):
    ok: bool
    summary: str  # what changed, or why it was refused
    errors: tuple[str, ...] = ()


Apply = Callable[[Config], Awaitable[str]]


class Reloader:
    def __init__(
        self,
        path: str | os.PathLike[str],
        apply: Apply,
        events: EventBus,
        *,
        environ: Callable[[], Mapping[str, str]] = lambda: os.environ,
    ) -> None:
        self.path = path
        self._apply = apply
        self._events = events
        self._environ = environ
        self._waiting: list[asyncio.Future[ReloadOutcome]] = []
        self._task: asyncio.Task[None] | None = None

    def request(self) -> asyncio.Future[ReloadOutcome]:
        """Ask for a reload; the future holds the outcome of the run that serves it."""
        future: asyncio.Future[ReloadOutcome] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="reload")
        return future

    async def close(self) -> None:
        task = self._task
        if task is not None:
            task.cancel()
            with _suppress_cancel():
                await task

    async def _run(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                outcome = await self._reload_once()
                for future in batch:
                    if not future.done():
                        future.set_result(outcome)
        finally:
            self._task = None
            for future in self._waiting:  # cancelled mid-way: nobody is left waiting
                future.cancel()

    async def _reload_once(self) -> ReloadOutcome:
        try:
            config = load_file(self.path, self._environ())
        except ConfigError as exc:
            for error in exc.errors:
                log.error("reload: %s", error)
            return self._refused(f"{len(exc.errors)} error(s) in {self.path}", exc.errors)
        except OSError as exc:
            return self._refused(f"cannot read {self.path}: {exc.strerror or exc}", ())
        try:
            summary = await self._apply(config)
        except StartError as exc:
            return self._refused(str(exc), (str(exc),))
        except Exception as exc:
            log.exception("reload: applying %s failed", self.path)
            return self._refused(f"applying it failed: {exc!r}", ())
        self._events.publish("reload_applied", detail=summary)
        return ReloadOutcome(True, summary)

    def _refused(self, why: str, errors: tuple[str, ...] | list[str]) -> ReloadOutcome:
        self._events.publish("reload_refused", detail=f"{why}; the running config stays")
        return ReloadOutcome(False, why, tuple(errors))


class _suppress_cancel:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> bool:
        return kind is asyncio.CancelledError
