"""``pilotfish demo``: three demo backends and a sidecar in one process, with a live view.

No Docker and no Consul: the backends are aiohttp servers on 127.0.0.1, the sidecar finds
them by static discovery, and a traffic loop sends a steady rate through the sidecar's
upstream listener. With ``--chaos`` one backend is killed a third of the way in and
revived at two thirds, so ejection, retries and recovery show up live.

Every frame of the view starts with the address of the live admin page and gives each
backend's name (the name its static entry gives it, which the page shows too), address and
state, in the words of ``/clusters`` and the page. Ctrl-C (SIGINT) or SIGTERM ends the
demo early the way the end of ``--duration`` does: final frame, summary, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections import Counter

import aiohttp
import yaml
from aiohttp import web

from sidecar.app import Sidecar
from sidecar.config import load_text
from sidecar.endpoint_state import endpoint_state
from sidecar.runtime import run_async

BACKENDS = (("alpha", 3), ("bravo", 2), ("charlie", 1))


class DemoBackend:
    def __init__(self, name: str) -> None:
        self.name = name
        self.port = 0
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/health", lambda r: web.Response(text="ok"))
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def _handle(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"backend": self.name, "path": request.path}, headers={"x-backend": self.name}
        )

    async def kill(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


def demo_config(backends: list[DemoBackend]) -> str:
    return yaml.safe_dump(
        {
            "service": {"name": "demo", "port": 1},
            "listeners": {"admin": {"address": "127.0.0.1", "port": 0}},
            "upstreams": [
                {
                    "name": "catalog",
                    "listen": "127.0.0.1:0",
                    "discovery": {
                        "static": [
                            {"address": "127.0.0.1", "port": b.port, "weight": w, "name": b.name}
                            for b, (_, w) in zip(backends, BACKENDS, strict=True)
                        ]
                    },
                    "balancer": {"policy": "weighted_round_robin"},
                    "retries": {"attempts": 2, "per_try_timeout": "500ms"},
                    "circuit_breakers": {"endpoint": {"reset_timeout": "2s"}},
                    "outlier_detection": {
                        "consecutive_local_origin_failure": 2,
                        "base_ejection_time": "2s",
                    },
                    "health_check": {
                        "http": {"path": "/health"},
                        "interval": "1s",
                        "timeout": "250ms",
                        "unhealthy_threshold": 2,
                        "healthy_threshold": 1,
                    },
                }
            ],
            "access_log": {"enabled": False},
            "tracing": {"enabled": False},
            "log_level": "warning",
        }
    )


class View:
    def __init__(self, endpoints: dict[str, str], admin_page: str) -> None:
        self.endpoints = endpoints  # backend name -> endpoint id
        self.admin_page = admin_page
        self.by_backend: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()
        self.retried = 0
        self.total = 0

    def render(self, elapsed: float, duration: float, sidecar: Sidecar, note: str) -> str:
        cluster = sidecar.clusters["catalog"]
        lines = [
            f"pilotfish demo  {elapsed:5.1f}s / {duration:.0f}s   requests: {self.total}"
            f"   retried: {self.retried}   {note}",
            f"live admin page: {self.admin_page}   (Ctrl-C ends the demo)",
            "",
        ]
        lines.append(f"  {'endpoint':<10}{'address':<18}{'share':>8}{'requests':>10}   state")
        for name, endpoint_id in self.endpoints.items():
            n = self.by_backend[name]
            share = 100.0 * n / self.total if self.total else 0.0
            state = endpoint_state(cluster, endpoint_id)
            lines.append(f"  {name:<10}{endpoint_id:<18}{share:7.1f}%{n:>10}   {state}")
        statuses = "  ".join(f"{k}: {v}" for k, v in sorted(self.by_status.items()))
        lines += ["", f"  statuses  {statuses}", ""]
        return "\n".join(lines)


async def _traffic(port: int, rate: float, view: View, stop: asyncio.Event) -> None:
    interval = 1.0 / rate
    async with aiohttp.ClientSession() as session:
        next_at = time.monotonic()
        pending: set[asyncio.Task[None]] = set()

        async def one() -> None:
            try:
                async with session.get(f"http://127.0.0.1:{port}/items") as r:
                    await r.read()
                    view.by_status[str(r.status)] += 1
                    view.by_backend[r.headers.get("x-backend", "-")] += 1
                    if r.headers.get("x-pilotfish-attempts", "1") != "1":
                        view.retried += 1
            except aiohttp.ClientError:
                view.by_status["client-error"] += 1
            view.total += 1

        while not stop.is_set():
            task = asyncio.create_task(one())
            pending.add(task)
            task.add_done_callback(pending.discard)
            next_at += interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
        if pending:
            await asyncio.wait(pending, timeout=2)


async def demo_main(duration: float, rate: float, chaos: bool) -> int:
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupted.set)
    backends = [DemoBackend(name) for name, _ in BACKENDS]
    for b in backends:
        await b.start()
    sidecar = Sidecar(load_text(demo_config(backends), environ={}))
    await sidecar.start()
    _, port = sidecar.address("upstream:catalog")
    _, admin = sidecar.address("admin")
    admin_page = f"http://127.0.0.1:{admin}/"
    print(
        f"sidecar upstream listener: http://127.0.0.1:{port}/   live admin page: {admin_page}",
        flush=True,
    )
    view = View({b.name: f"127.0.0.1:{b.port}" for b in backends}, admin_page)
    stop = asyncio.Event()
    traffic = asyncio.create_task(_traffic(port, rate, view, stop))
    tty = sys.stdout.isatty()
    started = time.monotonic()
    notes: list[str] = [""]

    async def chaos_loop() -> None:
        victim = backends[1]
        await asyncio.sleep(duration / 3)
        await victim.kill()
        notes[0] = f"[chaos: {victim.name} killed]"
        print(notes[0], flush=True)
        await asyncio.sleep(duration / 3)
        await victim.start()
        notes[0] = f"[chaos: {victim.name} revived]"
        print(notes[0], flush=True)

    chaos_task = asyncio.create_task(chaos_loop()) if chaos else None
    try:
        while (elapsed := time.monotonic() - started) < duration and not interrupted.is_set():
            frame = view.render(elapsed, duration, sidecar, notes[0])
            print(("\x1b[H\x1b[2J" if tty else "") + frame, flush=True)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(1.0, max(0.0, duration - elapsed))):
                    await interrupted.wait()
    finally:
        stop.set()
        if chaos_task is not None:
            chaos_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await chaos_task
        await traffic
        ending = "interrupted" if interrupted.is_set() else "done"
        print(view.render(time.monotonic() - started, duration, sidecar, ending), flush=True)
        await sidecar.stop()
        for b in backends:
            await b.kill()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    failed = sum(v for k, v in view.by_status.items() if not k.startswith("2"))
    print(f"sent {view.total} requests, {failed} failed, {view.retried} retried")
    return 0


def run_demo(*, duration: float, rate: float, chaos: bool) -> int:
    return run_async(lambda: demo_main(duration, rate, chaos))
