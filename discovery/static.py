"""Static discovery: a fixed endpoint list, published once."""

from __future__ import annotations

import time
from collections.abc import Sequence

from discovery.model import Endpoint, EndpointSet
from discovery.watch import Watch, endpoint_watch


class StaticSource:
    def __init__(self, name: str, endpoints: Sequence[Endpoint]) -> None:
        self.watch: Watch[EndpointSet] = endpoint_watch(name)
        self._snapshot = EndpointSet.of(endpoints, source="static")

    async def run(self) -> None:
        self.watch.publish(self._snapshot, now=time.time())

    async def close(self) -> None:
        return None
