"""The compose stack's traffic generator: a steady rate of GETs at frontend's sidecar.

``TARGET_URL`` is frontend's inbound listener (the address callers outside frontend use),
``RATE`` requests per second. Every ``REPORT_EVERY`` seconds it prints one line of status
counts and how many answers took a retry (``x-pilotfish-attempts`` > 1), so ejection and
retries are visible in ``docker compose logs -f loadgen``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter

import aiohttp


def summary(statuses: Counter[str], retried: int) -> str:
    total = sum(statuses.values())
    parts = "  ".join(f"{k}={v}" for k, v in sorted(statuses.items()))
    return f"requests={total}  {parts}  retried={retried}"


async def run(url: str, rate: float, report_every: float) -> None:
    statuses: Counter[str] = Counter()
    retried = 0
    pending: set[asyncio.Task[None]] = set()
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def one() -> None:
            nonlocal retried
            try:
                async with session.get(url) as r:
                    await r.read()
                    statuses[str(r.status)] += 1
                    if r.headers.get("x-pilotfish-attempts", "1") != "1":
                        retried += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                statuses[type(exc).__name__] += 1

        next_at = report_at = time.monotonic()
        while True:
            task = asyncio.create_task(one())
            pending.add(task)
            task.add_done_callback(pending.discard)
            now = time.monotonic()
            if now >= report_at + report_every:
                print(summary(statuses, retried), flush=True)
                statuses.clear()
                retried = 0
                report_at = now
            next_at += 1.0 / rate
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))


def main() -> None:
    url = os.environ.get("TARGET_URL", "http://frontend:15000/checkout")
    rate = float(os.environ.get("RATE", "5"))
    asyncio.run(run(url, rate, float(os.environ.get("REPORT_EVERY", "10"))))


if __name__ == "__main__":
    main()
