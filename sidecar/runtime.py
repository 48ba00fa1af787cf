"""Running a ``Sidecar`` as a process: event loop choice, logging, signals.

uvloop is the default loop when installed. SIGTERM and SIGINT start a graceful stop;
a second signal stops at once.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Awaitable, Callable

from sidecar.app import Sidecar, StartError
from sidecar.config.schema import Config

# Allocations (net of frees) between young-generation collections; CPython's default is 700.
GC_THRESHOLD = 10_000


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def run_async(main: Callable[[], Awaitable[int]]) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every platform we ship
        return asyncio.run(main())
    return uvloop.run(main())


async def serve(config: Config) -> int:
    sidecar = Sidecar(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            await sidecar.start()
        except StartError as exc:
            logging.getLogger("pilotfish").error("%s", exc)
            await sidecar.stop()  # what did start (discovery, health checks) stops again
            return 1
        settle_garbage_collector()
        await stop.wait()
        for sig in signals:  # a second signal ends the drain at once
            loop.add_signal_handler(sig, _exit_now)
        logging.getLogger("pilotfish").info("stopping: draining in-flight requests")
        await sidecar.stop()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    return 0


def settle_garbage_collector() -> None:
    """Start-up is done: what exists now (modules, config, the SDKs) lives as long as the
    process, so the cyclic collector stops scanning it (``gc.freeze``), and collects young
    objects less often. Without this a full collection walked every start-up object every
    few hundred requests, a cost the profile showed spread over whatever allocated next.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])


def _exit_now() -> None:
    raise SystemExit(1)
