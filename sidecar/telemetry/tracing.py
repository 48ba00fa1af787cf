"""Spans of one sidecar: a SERVER span per accepted request, a CLIENT span per attempt.

Each sidecar has a private ``TracerProvider`` (the global one is left alone, so several
sidecars can share a process), a sampler from ``TracingConfig``, and, when an endpoint is
configured, a ``BatchSpanProcessor`` feeding an OTLP/HTTP exporter. W3C ``traceparent``/
``tracestate`` of the incoming request are continued. A recorded request's attempts each
get a fresh ``traceparent`` naming its CLIENT span; a request nobody records passes the
client's ``traceparent`` on as it came, or, when it has none (or this hop decided other
than the client did), one naming the request's own unrecorded span. ``tracestate`` and
``baggage`` are forwarded untouched with the other request headers.

Invariants: attributes and events are built only for spans that record *and* will be
exported; a span is ended exactly once; nothing here blocks the event loop (flush and
shutdown run on a thread and are bounded in time).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from sidecar.config.schema import TracingConfig
from sidecar.telemetry import semconv
from sidecar.telemetry.sampling import SamplingRule
from sidecar.telemetry.span_export import (
    ExportCounts,
    build_sampler,
    counting_pipeline,
    run_in_thread,
)
from sidecar.telemetry.traceparent import RANDOM_TRACE_ID, SAMPLED
from sidecar.telemetry.traceparent import field as traceparent_field
from sidecar.telemetry.traceparent import parse as parse_traceparent

if TYPE_CHECKING:
    from sidecar.cluster import Cluster, EndpointState
    from sidecar.listener.request import DownstreamRequest
    from sidecar.pipeline.exchange import Exchange

_ERROR = Status(StatusCode.ERROR)


class _PresetIds(RandomIdGenerator):
    """Random ids, except a trace id drawn (and sampled) just before is handed out once."""

    def __init__(self) -> None:
        self.preset: int | None = None

    def generate_trace_id(self) -> int:
        preset = self.preset
        if preset is not None:
            self.preset = None
            return preset
        return super().generate_trace_id()


class TraceState(Protocol):
    """Where a request's trace decision is kept (the observer's per-request context)."""

    trace_id: int
    span: Span | None  # the SERVER span, when the request is recorded
    trace_fields: bytes | None  # what its attempts send when it is not; None: as received


class Tracing:
    def __init__(
        self,
        config: TracingConfig,
        service_name: str,
        counts: ExportCounts,
        *,
        version: str = "",
    ) -> None:
        resource = Resource.create({SERVICE_NAME: config.service_name or service_name})
        self._ids = _PresetIds()
        self.provider = TracerProvider(
            sampler=build_sampler(config.sampler, config.sampler_arg),
            resource=resource,
            shutdown_on_exit=False,
            id_generator=self._ids,
        )
        self.exporting = config.endpoint is not None
        if config.endpoint is not None:
            queue = config.max_queue_size
            # Imported here: protobuf and the exporter cost ~0.1 s of start-up when unused.
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=config.endpoint, headers=dict(config.headers))

            def batch(inner: SpanExporter) -> BatchSpanProcessor:
                return BatchSpanProcessor(
                    inner,
                    max_queue_size=queue,
                    schedule_delay_millis=config.schedule_delay * 1000,
                    export_timeout_millis=config.export_timeout * 1000,
                    max_export_batch_size=min(config.max_export_batch_size, queue),
                )

            self.provider.add_span_processor(counting_pipeline(exporter, counts, queue, batch))
        self.tracer = self.provider.get_tracer("pilotfish", version)
        self.rule = SamplingRule(config.sampler, config.sampler_arg)
        self.propagator = TraceContextTextMapPropagator()

    # -- SERVER spans ----------------------------------------------------------------

    def start_server(
        self, trace: TraceState, listener: str, request: DownstreamRequest, scheme: str
    ) -> None:
        """Decide the request's trace and set ``trace`` to it: its trace id; the SERVER span
        when it records; else the ``traceparent`` its attempts send (``None``: the one the
        client sent goes on unchanged).

        Most requests are not sampled, and one that is not costs the sampling rule's
        comparison: no span object, no context, and no header when the client's trace
        context goes on as it came (this hop records nothing, so the next hop's parent is
        the client's span). A sampled one is started by the SDK with the same trace id, so
        its sampler (a function of the parent and the trace id) decides the same way.
        """
        raw = request.fields.noted.get(b"traceparent")
        parent = parse_traceparent(raw) if raw is not None else None
        if parent is not None:
            trace_id, _, parent_flags = parent
            sampled = self.rule.sampled(bool(parent_flags & SAMPLED), trace_id)
        else:
            trace_id = self._ids.generate_trace_id()
            parent_flags = RANDOM_TRACE_ID  # as the SDK marks its roots
            sampled = self.rule.sampled(None, trace_id)
        trace.trace_id = trace_id
        if sampled and self.exporting:
            span = self._recorded_server(trace_id, raw, listener, request, scheme)
            if span.is_recording():
                trace.span = span
                return
            span.end()
        if parent is not None and sampled == bool(parent_flags & SAMPLED):
            return
        flags = (parent_flags & ~SAMPLED) | (SAMPLED if sampled else 0)
        trace.trace_fields = traceparent_field(trace_id, self._ids.generate_span_id(), flags)

    def _recorded_server(
        self,
        trace_id: int,
        traceparent: bytes | None,
        listener: str,
        request: DownstreamRequest,
        scheme: str,
    ) -> Span:
        fields = request.fields
        parent: Context | None = None
        if traceparent is not None:
            carrier = {"traceparent": traceparent.decode("ascii")}
            state = fields.noted.get(b"tracestate")
            if state is not None:
                carrier["tracestate"] = state.decode("latin-1")
            parent = self.propagator.extract(carrier)
        self._ids.preset = trace_id
        try:
            span = self.tracer.start_span(
                semconv.span_name(request.method), context=parent, kind=SpanKind.SERVER
            )
        finally:
            self._ids.preset = None
        if span.is_recording():
            transport = request.transport
            peer = transport.get_extra_info("peername") if transport is not None else None
            version = request.version
            span.set_attributes(
                semconv.server_attributes(
                    listener=listener,
                    method=request.method,
                    raw_path=request.raw_path,
                    scheme=scheme,
                    host=request.host,
                    peer=(peer[0], peer[1]) if peer else None,
                    forwarded_for=fields.get("X-Forwarded-For"),
                    user_agent=fields.get("User-Agent"),
                    version=f"{version.major}.{version.minor}",
                )
            )
        return span

    def end_server(
        self, span: Span, status: int, error: str | None, ex: Exchange | None, flags: str
    ) -> None:
        if self.exporting and span.is_recording():
            span.set_attributes(
                semconv.server_end_attributes(
                    status=status,
                    error=error,
                    cluster=ex.route.cluster.name if ex is not None else None,
                    attempts=len(ex.attempts) if ex is not None else 0,
                    flags=flags,
                    request_id=ex.request_id if ex is not None else None,
                )
            )
            if semconv.server_error_type(status, error) is not None:
                span.set_status(_ERROR)
        span.end()

    # -- CLIENT spans ----------------------------------------------------------------

    def start_client(
        self, trace: TraceState, ex: Exchange, cluster: Cluster, state: EndpointState
    ) -> Span | None:
        """The attempt's CLIENT span, below the request's SERVER span, and its
        ``traceparent`` on the request (``ex.trace_fields``).

        Below a SERVER span that does not record, the child would not either (every sampler
        offered decides a local child as its parent was decided), so no span is made: the
        request's ``traceparent`` goes to the next hop. Returns None then.
        """
        server = trace.span
        if server is None:
            if trace.trace_fields is not None:
                ex.trace_fields = trace.trace_fields
            return None
        span = self.tracer.start_span(
            semconv.span_name(ex.method),
            context=set_span_in_context(server),
            kind=SpanKind.CLIENT,
        )
        if span.is_recording():
            endpoint = state.endpoint
            span.set_attributes(
                semconv.client_attributes(
                    method=ex.method,
                    address=endpoint.address,
                    port=endpoint.port,
                    path=ex.path,
                    attempt=len(ex.attempts),
                    cluster=cluster.name,
                    endpoint=state.id,
                    balancer=cluster.balancer_policy,
                )
            )
        # A fresh traceparent per attempt: the next hop's SERVER span is this span's child.
        sc = span.get_span_context()
        ex.trace_fields = traceparent_field(sc.trace_id, sc.span_id, sc.trace_flags)
        return span

    def end_client(self, span: Span, status: int | None, error: str | None) -> None:
        if self.exporting and span.is_recording():
            error_type = semconv.client_error_type(status, error)
            span.set_attributes(semconv.client_attempt_end_attributes(status, error_type))
            if error_type is not None:
                span.set_status(_ERROR)
        span.end()

    # -- events and ids ----------------------------------------------------------------

    def add_event(self, span: Span, name: str, attributes: dict[str, Any]) -> None:
        if self.exporting and span.is_recording():
            span.add_event(name, attributes)

    # -- lifecycle ---------------------------------------------------------------------

    async def flush(self, timeout: float = 5.0) -> bool:
        """Export every ended span now; False if the collector did not take them in time."""
        return await run_in_thread(self.provider.force_flush, timeout)

    async def shutdown(self, timeout: float = 5.0) -> None:
        """Flush (bounded by ``timeout``), then stop the exporter thread.

        After a flush the queue is empty, or the collector is unreachable and waiting longer
        would not help: the stop itself gets one second.
        """
        await self.flush(timeout)
        await run_in_thread(self.provider.shutdown, 1.0)
