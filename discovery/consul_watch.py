"""``ConsulHealthWatcher``: a Source that follows one service's healthy instances in Consul.

One long-lived loop of blocking reads of ``/v1/health/service/<name>``:

* the next ``index`` comes from ``consul_blocking.next_index`` (reset on a backwards index,
  never below 1 after an answer); the loop is rate limited by a burst-2 token bucket refilled
  every ``min_interval`` seconds (``MIN_INTERVAL``, 100 ms: consul-template's pace). A change is
  therefore read at most ``min_interval`` after the answer before it, also when changes come
  in quick succession or right after an index reset, and one watch makes at most about ten
  reads a second (2 + t/``min_interval`` in t seconds);
* each answer is parsed by the pure ``parse_health_service`` and published; ``Watch.publish``
  ignores a snapshot with unchanged content, and this loop logs nothing on such a wake-up;
* any failure (unreachable, timeout, 5xx, 403, malformed JSON or entries) keeps the last good
  snapshot, is recorded with ``watch.fail``, and is retried after a capped, jittered
  exponential backoff. The watch tells once when an outage starts and once when it ends
  (``Watch.on_outage``: a log line unless the sidecar takes it as an event); the ACL token
  never appears in either.

``tags``: the first tag is sent to Consul as ``?tag=`` (python-consul2 passes only one); every
tag is then checked on each instance, so all of them must be present.

Cancelling ``run`` always ends it: its waits are ``asyncio.timeout`` blocks, never
``asyncio.wait_for`` (see ``consul_client``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Sequence

from discovery.consul_blocking import TokenBucket, next_index
from discovery.consul_client import ConsulClient, ConsulClientOptions
from discovery.consul_parse import parse_health_service
from discovery.errors import DiscoveryError
from discovery.model import EndpointSet
from discovery.watch import Watch, endpoint_watch
from resilience.backoff import JitteredBackoff
from resilience.clock import MONOTONIC, Clock

BURST = 2
# Seconds per token. Consul's documentation suggests degrading to a read every ~15 s under
# churn; that lets routing lag a churning service by up to 15 s (see docs/discovery.md).
MIN_INTERVAL = 0.1


class ConsulHealthWatcher:
    """Publishes the instances of ``service`` that Consul reports healthy."""

    def __init__(
        self,
        options: ConsulClientOptions,
        *,
        service: str,
        tags: Sequence[str] = (),
        passing_only: bool = True,
        datacenter: str | None = None,
        wait: float = 55.0,
        rng: random.Random | None = None,
        min_interval: float = MIN_INTERVAL,
        backoff_base: float = 0.1,
        backoff_cap: float = 10.0,
        clock: Clock = MONOTONIC,
    ) -> None:
        if not service:
            raise ValueError("service name is empty")
        if not 0 < wait <= 600:
            raise ValueError(f"wait must be in (0, 600] seconds (Consul's limit), got {wait}")
        self.service = service
        self.tags = tuple(tags)
        self.passing_only = passing_only
        self.datacenter = datacenter
        self.wait = wait
        self.watch: Watch[EndpointSet] = endpoint_watch(f"consul:{service}")
        self._client = ConsulClient(options)
        self._clock = clock
        self._bucket = TokenBucket(BURST, min_interval, clock.now())
        self._backoff = JitteredBackoff(backoff_base, backoff_cap, rng or random.Random())
        self._index = 0
        self._closed = asyncio.Event()

    async def run(self) -> None:
        while not self._closed.is_set():
            try:
                returned, payload = await self._client.health_service(
                    self.service,
                    index=self._index,
                    wait=self.wait,
                    passing=self.passing_only,
                    tag=self.tags[0] if self.tags else None,
                    datacenter=self.datacenter,
                )
                snapshot = parse_health_service(
                    payload, passing_only=self.passing_only, tags=self.tags
                )
            except DiscoveryError as exc:
                self._failed(str(exc))
                await self._pause(self._backoff.next())
                continue
            self._succeeded(snapshot)
            self._index = next_index(self._index, returned)
            await self._pause(self._bucket.take(self._clock.now()))

    async def close(self) -> None:
        """Stop ``run`` (it returns at its next step; cancel it to end a pending read)."""
        self._closed.set()
        await self._client.close()

    async def _pause(self, seconds: float) -> None:
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._closed.wait()

    def _failed(self, message: str) -> None:
        self.watch.fail(message)  # the watch tells when an outage starts

    def _succeeded(self, snapshot: EndpointSet) -> None:
        self._backoff.reset()
        self.watch.publish(snapshot, now=time.time())  # and when it ends
