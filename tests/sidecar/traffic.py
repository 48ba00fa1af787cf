"""Steady, bounded GET traffic through a sidecar, with every reply kept for assertions.

Requests are started on a fixed schedule (open loop: a slow reply does not delay the next
start) with a cap on how many are in flight. ``hooks`` run just before the request with that
sequence number is started, so a test can change the world at a known point of the traffic
(stop a backend, inject a fault) and tell which replies came before and after.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import aiohttp

Hook = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Reply:
    seq: int
    status: int  # 0: no HTTP answer at all
    backend: str  # the x-backend header, "" when absent
    attempts: str  # the x-pilotfish-attempts header, "" when absent
    error: str = ""  # a client-side exception, or the x-pilotfish-error of a non-200

    @property
    def ok(self) -> bool:
        return self.status == 200 and not self.error


@dataclass(frozen=True)
class Traffic:
    replies: tuple[Reply, ...]  # in sequence order

    @property
    def failed(self) -> list[Reply]:
        return [r for r in self.replies if not r.ok]

    def served(self, first: int = 0, last: int | None = None) -> Counter[str]:
        """Replies per backend among sequence numbers ``first`` .. ``last`` (inclusive)."""
        end = len(self.replies) - 1 if last is None else last
        return Counter(r.backend for r in self.replies if first <= r.seq <= end)


async def steady_gets(
    client: aiohttp.ClientSession,
    target: str,
    *,
    total: int,
    rate: float,
    hooks: Mapping[int, Hook] | None = None,
    max_in_flight: int = 32,
    limit: float = 60.0,
) -> Traffic:
    """Send ``total`` GETs to ``target`` at ``rate`` per second; fails after ``limit`` s."""
    hooks = hooks or {}
    replies: list[Reply] = []
    slots = asyncio.Semaphore(max_in_flight)

    async def one(seq: int) -> None:
        try:
            async with client.get(target) as r:
                await r.read()
                error = "" if r.status == 200 else r.headers.get("x-pilotfish-error", "?")
                replies.append(
                    Reply(
                        seq,
                        r.status,
                        r.headers.get("x-backend", ""),
                        r.headers.get("x-pilotfish-attempts", ""),
                        error,
                    )
                )
        except aiohttp.ClientError as exc:
            replies.append(Reply(seq, 0, "", "", repr(exc)))
        finally:
            slots.release()

    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []
    async with asyncio.timeout(limit):
        start = loop.time()
        for seq in range(total):
            if seq in hooks:
                await hooks[seq]()
            # Pacing the load generator, not synchronising with the system under test.
            delay = start + seq / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await slots.acquire()
            tasks.append(asyncio.create_task(one(seq)))
        await asyncio.gather(*tasks)
    return Traffic(tuple(sorted(replies, key=lambda r: r.seq)))
