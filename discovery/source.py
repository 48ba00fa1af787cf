"""The one interface every discovery source implements.

``run`` is a long-lived coroutine (the sidecar runs it as a task and cancels it at
shutdown); it publishes snapshots into ``watch`` and never raises for a bad answer from
its backend: it records the failure with ``watch.fail`` and retries with backoff.
"""

from __future__ import annotations

from typing import Protocol

from discovery.model import EndpointSet
from discovery.watch import Watch


class Source(Protocol):
    watch: Watch[EndpointSet]

    async def run(self) -> None: ...

    async def close(self) -> None: ...
