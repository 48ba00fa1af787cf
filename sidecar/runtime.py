"""Running a ``Sidecar`` as a process: event loop choice, logging, signals.

uvloop is the default loop when installed. SIGTERM and SIGINT start a graceful stop;
a second signal stops at once. SIGHUP reloads the config file (as ``systemctl reload``
and every nginx or HAProxy user expects); one that comes while the sidecar starts is
ignored, since the file is read right then anyway. A stop signal that arrives while the
sidecar is still starting (waiting for its first endpoints, say) cuts the start short: what
started is stopped, and nothing is begun after the signal, the Consul registration
included.
"""

from __future__ import annotations

import asyncio
import contextlib
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


async def serve(config: Config, config_path: str | None = None) -> int:
    sidecar = Sidecar(config, config_path=config_path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    # Until started, a hang-up must not end the process (the default action does).
    loop.add_signal_handler(signal.SIGHUP, lambda: None)
    try:
        try:
            started = await _start_unless_stopped(sidecar, stop)
        except StartError as exc:
            logging.getLogger("pilotfish").error("%s", exc)
            await sidecar.stop()  # what did start (discovery, health checks) stops again
            return 1
        if started:
            settle_garbage_collector()
            if sidecar.reloader is not None:
                loop.add_signal_handler(signal.SIGHUP, sidecar.reloader.request)
            await stop.wait()
        for sig in signals:  # a second signal ends the drain at once
            loop.add_signal_handler(sig, _exit_now)
        logging.getLogger("pilotfish").info("stopping: draining in-flight requests")
        await sidecar.stop()
    finally:
        for sig in (*signals, signal.SIGHUP):
            loop.remove_signal_handler(sig)
    return 0


async def _start_unless_stopped(sidecar: Sidecar, stop: asyncio.Event) -> bool:
    """Start ``sidecar``; False when ``stop`` was set first (the start is then cancelled)."""
    starting = asyncio.ensure_future(sidecar.start())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((starting, stopping), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        starting.cancel()
        raise
    finally:
        stopping.cancel()
    if starting.done():
        starting.result()  # raises StartError
        return True
    starting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await starting
    logging.getLogger("pilotfish").info("signal received while starting: start abandoned")
    return False


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
