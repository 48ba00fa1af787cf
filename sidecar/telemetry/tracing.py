"""Spans of one sidecar: a SERVER span per accepted request, a CLIENT span per attempt.

Each sidecar has a private ``TracerProvider`` (the global one is left alone, so several
sidecars can share a process), a sampler from ``TracingConfig``, and, when an endpoint is
configured, a ``BatchSpanProcessor`` feeding an OTLP/HTTP exporter. W3C ``traceparent``/
``tracestate`` of the incoming request are continued; each attempt gets a fresh
``traceparent`` naming its CLIENT span. ``baggage`` is forwarded untouched with the other
request headers.

Invariants: attributes and events are built only for spans that record *and* will be
exported; a span is ended exactly once; nothing here blocks the event loop (flush and
shutdown run on a thread and are bounded in time).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import (
    INVALID_SPAN_CONTEXT,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    get_current_span,
    set_span_in_context,
)
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

if TYPE_CHECKING:
    from multidict import CIMultiDict

    from sidecar.cluster import Cluster, EndpointState
    from sidecar.listener.request import DownstreamRequest
    from sidecar.pipeline.exchange import Exchange

# By (sampled + 2 * random trace id): the four trace-flags values a span of ours can carry.
_TRACE_FLAGS = tuple(
    TraceFlags((TraceFlags.SAMPLED if i & 1 else 0) | (TraceFlags.RANDOM_TRACE_ID if i & 2 else 0))
    for i in range(4)
)
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


def _inject(headers: CIMultiDict[str], sc: SpanContext, span_id: int | None = None) -> None:
    """W3C Trace Context headers naming ``sc`` (or, with ``span_id``, a child of it that is
    decided as it was): what ``TraceContextTextMapPropagator.inject`` writes, without
    building a Context per attempt."""
    if not sc.is_valid:
        return
    sid = sc.span_id if span_id is None else span_id
    headers["traceparent"] = f"00-{sc.trace_id:032x}-{sid:016x}-{sc.trace_flags:02x}"
    if sc.trace_state:
        headers["tracestate"] = sc.trace_state.to_header()


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

    # -- spans that record nothing -------------------------------------------------------

    def _unrecorded(self, parent: Context | None) -> Span:
        """A SERVER span that records nothing: its ids and sampled flag, decided by the
        sampling rule. Enough for every request nobody will receive (nothing is exported, or
        the request is not sampled): the ids go to the next hop and the access log.
        """
        remote = (
            get_current_span(parent).get_span_context()
            if parent is not None
            else INVALID_SPAN_CONTEXT
        )
        valid = remote.is_valid
        trace_id = remote.trace_id if valid else self._ids.generate_trace_id()
        # As the SDK marks its spans: our root ids are random; a parent's say what they are.
        random_id = not valid or remote.trace_flags.random_trace_id
        flags = _TRACE_FLAGS[self.rule.sampled(remote, trace_id) + 2 * random_id]
        context = SpanContext(
            trace_id,
            self._ids.generate_span_id(),
            is_remote=False,
            trace_flags=flags,
            trace_state=remote.trace_state if valid else None,
        )
        return NonRecordingSpan(context)

    # -- SERVER spans ----------------------------------------------------------------

    def start_server(self, listener: str, request: DownstreamRequest, scheme: str) -> Span:
        headers = request.headers
        parent: Context | None = (
            self.propagator.extract(headers) if "traceparent" in headers else None
        )
        # Sample first, cheaply: most requests are not sampled and need no SDK span. A
        # sampled one is started by the SDK with the same trace id, so its sampler (a
        # function of the parent and the trace id) decides the same way.
        unrecorded = self._unrecorded(parent)
        sc = unrecorded.get_span_context()
        if not self.exporting or not sc.trace_flags.sampled:
            return unrecorded
        self._ids.preset = sc.trace_id
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
                    host=headers.get("Host"),
                    peer=(peer[0], peer[1]) if peer else None,
                    forwarded_for=headers.get("X-Forwarded-For"),
                    user_agent=headers.get("User-Agent"),
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
        self, parent: Span | None, ex: Exchange, cluster: Cluster, state: EndpointState
    ) -> Span | None:
        """The attempt's CLIENT span, and its ``traceparent`` on the request.

        Below a SERVER span that does not record, the child would not either (every sampler
        offered decides a local child as its parent was decided), so no span is made: only
        the header, naming a fresh span id, goes to the next hop. Returns None then.
        """
        if parent is not None and not parent.is_recording():
            _inject(ex.headers, parent.get_span_context(), self._ids.generate_span_id())
            return None
        context = set_span_in_context(parent) if parent is not None else None
        span = self.tracer.start_span(
            semconv.span_name(ex.method), context=context, kind=SpanKind.CLIENT
        )
        if self.exporting and span.is_recording():
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
        _inject(ex.headers, span.get_span_context())
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

    @staticmethod
    def trace_id(span: Span) -> str:
        return format(span.get_span_context().trace_id, "032x")

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
