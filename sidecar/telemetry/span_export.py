"""Getting spans out: the sampler from config, export accounting, and bounded flushing.

The OTLP exporter runs on the batch processor's own thread, so an unreachable collector
costs the request path nothing: the queue fills and further spans are dropped.
``CountingExporter`` and ``DropCountingProcessor`` make that visible as counters, and
``run_in_thread`` lets the event loop wait for a flush without blocking on it.

Invariants: every sampled span that ends is counted exactly once — dropped (it arrived
while ``max_queue`` spans were waiting for the exporter, and was never queued), or, once
handed to the exporter, exported or failed. The batch processor's own queue is never the
one that overflows, so nothing is lost uncounted.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)

Count = Callable[[int], None]


def build_sampler(name: str, arg: float) -> Sampler:
    """The sampler named like ``OTEL_TRACES_SAMPLER``; ``arg`` is the ratio where one applies."""
    roots: dict[str, Callable[[], Sampler]] = {
        "always_on": lambda: ALWAYS_ON,
        "always_off": lambda: ALWAYS_OFF,
        "traceidratio": lambda: TraceIdRatioBased(arg),
    }
    base = name.removeprefix("parentbased_")
    if base not in roots:
        raise ValueError(f"unknown sampler {name!r}")
    root = roots[base]()
    return ParentBased(root) if name.startswith("parentbased_") else root


class ExportCounts:
    """Callbacks the exporter and the processor report to (metrics live elsewhere)."""

    __slots__ = ("dropped", "exported", "failed")

    def __init__(self, exported: Count, failed: Count, dropped: Count) -> None:
        self.exported = exported
        self.failed = failed
        self.dropped = dropped


class _Backlog:
    """Spans queued but not yet handed to the exporter; shared by the two wrappers."""

    __slots__ = ("lock", "pending")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending = 0


class CountingExporter(SpanExporter):
    def __init__(self, inner: SpanExporter, counts: ExportCounts, backlog: _Backlog) -> None:
        self._inner = inner
        self._counts = counts
        self._backlog = backlog

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        n = len(spans)
        with self._backlog.lock:
            self._backlog.pending = max(0, self._backlog.pending - n)
        try:
            result = self._inner.export(spans)
        except Exception:
            result = SpanExportResult.FAILURE
        (self._counts.exported if result is SpanExportResult.SUCCESS else self._counts.failed)(n)
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class DropCountingProcessor(SpanProcessor):
    """Bounds the spans waiting for export at ``max_queue``, counting the ones refused.

    The wrapped ``BatchSpanProcessor`` has room for ``max_queue`` too, and never holds more
    than ``pending``, so its own silent drop-oldest never happens.
    """

    def __init__(
        self, inner: SpanProcessor, counts: ExportCounts, backlog: _Backlog, max_queue: int
    ) -> None:
        self._inner = inner
        self._counts = counts
        self._backlog = backlog
        self._max_queue = max_queue

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self._inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is not None and span.context.trace_flags.sampled:
            backlog = self._backlog
            with backlog.lock:
                if backlog.pending >= self._max_queue:
                    dropped = True
                else:
                    backlog.pending += 1
                    dropped = False
            if dropped:
                self._counts.dropped(1)
                return
        self._inner.on_end(span)

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def counting_pipeline(
    exporter: SpanExporter,
    counts: ExportCounts,
    max_queue: int,
    make_batch: Callable[[SpanExporter], SpanProcessor],
) -> SpanProcessor:
    """``make_batch(counting exporter)`` wrapped so queue overflows are counted."""
    backlog = _Backlog()
    batch = make_batch(CountingExporter(exporter, counts, backlog))
    return DropCountingProcessor(batch, counts, backlog, max_queue)


async def run_in_thread(fn: Callable[[], object], timeout: float) -> bool:
    """Run blocking ``fn`` on a daemon thread; False if it failed or outlasted ``timeout``.

    A daemon thread rather than the loop's executor: an export stuck on an unreachable
    collector must not hold up interpreter exit.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bool] = loop.create_future()

    def settle(ok: bool) -> None:
        if not done.done():
            done.set_result(ok)

    def target() -> None:
        try:
            fn()
            ok = True
        except Exception:
            ok = False
        with contextlib.suppress(RuntimeError):  # the loop may be closed by now
            loop.call_soon_threadsafe(settle, ok)

    threading.Thread(target=target, name="pilotfish-trace-flush", daemon=True).start()
    try:
        async with asyncio.timeout(timeout):
            return await done
    except TimeoutError:
        return False
