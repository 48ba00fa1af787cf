"""``Telemetry``: the sidecar's ``Observer`` — spans, metrics and the access log in one place.

Built with the sidecar; ``open(sidecar)`` (once clusters exist) registers the scrape-time
collector and the ejection callbacks and starts tracing and the access log as configured;
``close()`` flushes spans and log lines. With tracing disabled no span object is ever made;
with the access log disabled no record is built.

An attempt reaches ``attempt_end`` once, when it is settled: at its failure, or at the
end of its response body (see ``sidecar.pipeline.attempt``), always before its request's
``request_end``.

Invariants: hooks never raise into the request path (an internal error is counted in
``pilotfish_telemetry_errors_total``); every accepted request is counted once and every
attempt once; a span is ended exactly once.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Mapping
from time import perf_counter, time
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from resilience.outcome import Outcome
from sidecar.config.schema import Config
from sidecar.telemetry.access_log import AccessLog, response_flags, rfc3339, trace_id_of
from sidecar.telemetry.metrics import RequestMetrics, code_class
from sidecar.telemetry.span_export import ExportCounts
from sidecar.telemetry.state_metrics import ReloadCollector, StateCollector, TelemetryView
from sidecar.telemetry.tracing import Tracing

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from sidecar.cluster import Cluster, EndpointState
    from sidecar.events import Event
    from sidecar.listener.head_rules import Refusal
    from sidecar.listener.request import DownstreamRequest
    from sidecar.pipeline.exchange import Exchange

log = logging.getLogger("pilotfish.telemetry")

# The request a task is handling, for cluster events (ejections) that carry no Exchange.
_CURRENT: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "pilotfish_request", default=None
)


class ListenerStats:
    __slots__ = ("duration", "in_flight", "name")

    def __init__(self, name: str, metrics: RequestMetrics) -> None:
        self.name = name
        self.in_flight = 0
        self.duration = metrics.downstream_duration[(name,)]


class RequestContext:
    """Per-request state, kept by the pipeline as ``Exchange.span``; its trace decision
    (``TraceState``) is set by ``Tracing.start_server``."""

    __slots__ = ("listener", "panic_seen", "span", "start", "trace_fields", "trace_id", "wall")

    def __init__(self, listener: ListenerStats, wall: float) -> None:
        self.listener = listener
        self.start = perf_counter()
        self.wall = wall  # for the access log only
        self.span: Span | None = None  # the SERVER span, when the request is recorded
        self.trace_id = 0  # none: tracing is off
        self.trace_fields: bytes | None = None
        self.panic_seen = False


class Attempt:
    __slots__ = ("cluster", "duration", "endpoint", "span", "start")

    def __init__(self, cluster: str, endpoint: str) -> None:
        self.cluster = cluster
        self.endpoint = endpoint
        self.start = perf_counter()
        self.duration = 0.0
        self.span: Span | None = None


class Telemetry:
    def __init__(self, config: Config, *, scheme: str = "http") -> None:
        self.config = config
        self.scheme = scheme
        self.registry = CollectorRegistry(auto_describe=False)
        self.metrics = RequestMetrics(self.registry)
        self.tracing: Tracing | None = None
        self.access_log: AccessLog | None = None
        self._listeners: dict[str, ListenerStats] = {}
        self.reloads = ReloadCollector()
        self._opened = False
        self._warned = False

    # -- lifecycle ---------------------------------------------------------------------

    def open(self, view: TelemetryView) -> None:
        """Start watching ``view`` (its clusters, sources and events) and start tracing and
        the access log as configured."""
        if self._opened:
            return
        self._opened = True
        self.registry.register(
            StateCollector(
                view.clusters, view.sources, self.listeners_in_flight, lambda: view.ready
            )
        )
        self.registry.register(self.reloads)
        view.events.subscribe(self._on_event)
        self._start_exports(self.config)

    def _start_exports(self, cfg: Config) -> None:
        if cfg.tracing.enabled:
            m = self.metrics
            counts = ExportCounts(
                m.spans_exported.inc, m.spans_failed.inc, m.trace_dropped_metric.inc
            )
            self.tracing = Tracing(cfg.tracing, cfg.service.name, counts)
        if cfg.access_log.enabled:
            self.access_log = AccessLog.open(cfg.access_log.path, on_error=self._fault)

    async def reconfigure(self, config: Config) -> None:
        """Tracing and the access log as ``config`` says: the new ones take over at once,
        the old ones are flushed and closed (spans begun on the old provider end on it)."""
        old_tracing, old_log = self.tracing, self.access_log
        self.config = config
        self.tracing = self.access_log = None
        self._start_exports(config)
        if old_log is not None:
            old_log.close()
        if old_tracing is not None:
            await old_tracing.shutdown(5.0)

    async def flush(self, timeout: float = 5.0) -> bool:
        """Write pending log lines and export ended spans now."""
        if self.access_log is not None:
            self.access_log.flush()
        if self.tracing is not None:
            return await self.tracing.flush(timeout)
        return True

    async def close(self, timeout: float = 5.0) -> None:
        if self.access_log is not None:
            self.access_log.close()
            self.access_log = None
        if self.tracing is not None:
            tracing, self.tracing = self.tracing, None
            await tracing.shutdown(timeout)

    def listeners_in_flight(self) -> Mapping[str, int]:
        return {name: s.in_flight for name, s in self._listeners.items()}

    def _listener(self, name: str) -> ListenerStats:
        stats = self._listeners[name] = ListenerStats(name, self.metrics)
        return stats

    def _fault(self) -> None:
        self.metrics.telemetry_errors_metric.inc()
        if not self._warned:
            self._warned = True
            log.exception("telemetry hook failed; the request went on (further errors counted)")

    # -- listener hooks (what happens before a request reaches a handler) ---------------

    def listener_refused(self, listener: str, refusal: Refusal) -> None:
        try:
            self.metrics.refused[(listener, str(refusal.status))].inc()
        except Exception:
            self._fault()

    def listener_overflow(self, listener: str) -> None:
        try:
            self.metrics.connection_overflows[(listener,)].inc()
        except Exception:
            self._fault()

    # -- Observer hooks ----------------------------------------------------------------

    def request_start(self, listener: str, request: DownstreamRequest) -> Any:
        try:
            stats = self._listeners.get(listener) or self._listener(listener)
            ctx = RequestContext(stats, time() if self.access_log is not None else 0.0)
        except Exception:
            self._fault()
            return None
        stats.in_flight += 1  # from here on a context is returned, so request_end balances it
        if self.tracing is not None:
            try:
                self.tracing.start_server(ctx, listener, request, self.scheme)
                if ctx.span is not None:
                    _CURRENT.set(ctx)
            except Exception:
                self._fault()
        return ctx

    def request_end(
        self,
        ctx: Any,
        listener: str,
        request: DownstreamRequest,
        ex: Exchange | None,
        status: int,
        error: str | None,
        bytes_out: int,
    ) -> None:
        if not isinstance(ctx, RequestContext):
            return
        try:
            elapsed = perf_counter() - ctx.start
            stats = ctx.listener
            stats.in_flight -= 1
            self.metrics.downstream_requests[(listener, code_class(status))].inc()
            stats.duration.observe(elapsed)
            tunnel = ex.tunnel if ex is not None else None
            if tunnel is not None:
                self.metrics.tunnel_bytes[(listener, "in")].inc(tunnel.bytes_in)
                self.metrics.tunnel_bytes[(listener, "out")].inc(tunnel.bytes_out)
            span = ctx.span
            flags = ""
            if self.access_log is not None or span is not None:
                flags = response_flags(ex.flags if ex is not None else "", error)
            if span is not None:
                _CURRENT.set(None)
                if self.tracing is not None:
                    self.tracing.end_server(span, status, error, ex, flags if flags != "-" else "")
                else:  # tracing was turned off by a reload meanwhile
                    span.end()
            if self.access_log is not None:
                self.access_log.write(
                    self._record(ctx, listener, request, ex, status, flags, elapsed, bytes_out)
                )
        except Exception:
            self._fault()

    def attempt_start(self, ex: Exchange, cluster: Cluster, state: EndpointState) -> Any:
        try:
            ctx = ex.span if isinstance(ex.span, RequestContext) else None
            if ctx is not None and cluster.panic and not ctx.panic_seen:
                ctx.panic_seen = True
                self._decision(ctx, "panic", {"pilotfish.cluster": cluster.name})
            if ex.hash_key is not None:
                primary = cluster.primary(ex.hash_key)
                if primary is not None and primary != state.id:
                    self.metrics.ring_hash_fallbacks[(cluster.name,)].inc()
                    self._decision(
                        ctx,
                        "ring_hash_fallback",
                        {"pilotfish.primary": primary, "pilotfish.endpoint": state.id},
                    )
            attempt = Attempt(cluster.name, state.id)
            if self.tracing is not None and ctx is not None and ctx.trace_id:
                attempt.span = self.tracing.start_client(ctx, ex, cluster, state)
            return attempt
        except Exception:
            self._fault()
            return None

    def attempt_end(
        self, token: Any, ex: Exchange, outcome: Outcome, status: int | None, error: str | None
    ) -> None:
        if not isinstance(token, Attempt):
            return
        try:
            token.duration = perf_counter() - token.start
            self._finish(token, outcome.value, status, error)
        except Exception:
            self._fault()

    def event(
        self, ex: Exchange | None, cluster: str, name: str, attributes: dict[str, Any]
    ) -> None:
        try:
            ctx = ex.span if ex is not None else _CURRENT.get()
            if ex is not None:
                m = self.metrics
                if name == "retry":
                    m.retries[(cluster,)].inc()
                elif name == "retry_budget_exhausted":
                    m.budget_exhausted[(cluster,)].inc()
                elif name == "breaker_rejected":
                    endpoint = str(attributes.get("pilotfish.endpoint", ""))
                    m.breaker_rejections[(cluster, endpoint)].inc()
            self._decision(ctx if isinstance(ctx, RequestContext) else None, name, attributes)
        except Exception:
            self._fault()

    # -- internals ---------------------------------------------------------------------

    def _decision(self, ctx: RequestContext | None, name: str, attributes: dict[str, Any]) -> None:
        if ctx is not None and ctx.span is not None and self.tracing is not None:
            self.tracing.add_event(ctx.span, name, attributes)

    def _finish(
        self, attempt: Attempt, outcome: str, status: int | None, error: str | None
    ) -> None:
        m = self.metrics
        key = (attempt.cluster, attempt.endpoint)
        m.attempts[(*key, outcome)].inc()
        m.attempt_duration[key].observe(attempt.duration)
        if outcome == "timeout":
            m.timeouts[key].inc()
        elif outcome == "connect_failure":
            m.connect_failures[key].inc()
        if attempt.span is not None and self.tracing is not None:
            self.tracing.end_client(attempt.span, status, error)

    def _on_event(self, event: Event) -> None:
        try:
            if event.kind == "endpoint_ejected":
                reason = str(event.attributes.get("reason", ""))
                endpoint = event.endpoint or ""
                self.metrics.ejections[(event.cluster or "", endpoint, reason)].inc()
                self._decision(
                    _CURRENT.get(),
                    "ejection",
                    {
                        "pilotfish.cluster": event.cluster or "",
                        "pilotfish.endpoint": endpoint,
                        "pilotfish.ejection.reason": reason,
                        "pilotfish.ejection.times": event.attributes.get("times", 0),
                    },
                )
            elif event.kind in ("reload_applied", "reload_refused"):
                self.reloads.record(event.kind == "reload_applied", event.at)
        except Exception:
            self._fault()

    def _record(
        self,
        ctx: RequestContext,
        listener: str,
        request: DownstreamRequest,
        ex: Exchange | None,
        status: int,
        flags: str,
        elapsed: float,
        bytes_out: int,
    ) -> dict[str, Any]:
        fields = request.fields
        if ctx.trace_id:
            trace_id: str | None = format(ctx.trace_id, "032x")
        else:
            trace_id = trace_id_of(fields.noted.get(b"traceparent"))
        last = ex.last if ex is not None else None
        return {
            "time": rfc3339(ctx.wall),
            "listener": listener,
            "method": request.method,
            "path": request.raw_path,
            "status": status,
            "duration_ms": round(elapsed * 1000, 3),
            "upstream_cluster": ex.route.cluster.name if ex is not None else None,
            "upstream_endpoint": last.state.id if last is not None else None,
            "upstream_endpoint_name": last.state.endpoint.name if last is not None else None,
            "attempts": len(ex.attempts) if ex is not None else 0,
            "response_flags": flags,
            "trace_id": trace_id,
            "request_id": ex.request_id if ex is not None else fields.get("x-request-id"),
            "bytes_in": request.content.total_bytes
            if ex is None or ex.tunnel is None
            else ex.tunnel.bytes_in,
            "bytes_out": bytes_out,
            "user_agent": fields.get("User-Agent"),
        }
