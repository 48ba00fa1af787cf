"""What a fuzz test must not see: errors logged by Pilotfish or left to the event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Faults(logging.Handler):
    """Collects ERROR records of Pilotfish's loggers and the loop's unhandled exceptions."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("aiohttp"):  # test backends log their own clients
            self.seen.append(f"{record.name}: {record.getMessage()}")

    def loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.seen.append(f"event loop: {context.get('message')} {context.get('exception')!r}")


@contextmanager
def watching_faults() -> Iterator[Faults]:
    faults = Faults()
    root = logging.getLogger()
    root.addHandler(faults)
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(faults.loop_error)
    try:
        yield faults
    finally:
        loop.set_exception_handler(previous)
        root.removeHandler(faults)
