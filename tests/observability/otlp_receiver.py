"""A real OTLP/HTTP trace receiver for tests: protobuf ``ExportTraceServiceRequest`` in.

Decodes what a sidecar's exporter sends to ``POST /v1/traces`` into ``ReceivedSpan``
values, and lets a test wait until the spans it expects have arrived. ``gate`` (when set)
holds every export until it is opened, to simulate a slow collector.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

SERVER = Span.SpanKind.SPAN_KIND_SERVER
CLIENT = Span.SpanKind.SPAN_KIND_CLIENT
STATUS_UNSET = Status.StatusCode.STATUS_CODE_UNSET
STATUS_ERROR = Status.StatusCode.STATUS_CODE_ERROR


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def _attributes(kvs: Iterable[KeyValue]) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


@dataclass
class ReceivedSpan:
    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    status: int = STATUS_UNSET
    start_ns: int = 0


class OtlpReceiver:
    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.exports = 0
        self.gate: asyncio.Event | None = None
        self._arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> OtlpReceiver:
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_post("/v1/traces", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self.gate is not None:
            self.gate.set()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"

    async def _handle(self, request: web.Request) -> web.Response:
        if self.gate is not None:
            await self.gate.wait()
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        for resource_spans in message.resource_spans:
            service = _attributes(resource_spans.resource.attributes).get("service.name", "")
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        ReceivedSpan(
                            service=service,
                            name=span.name,
                            kind=span.kind,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            attributes=_attributes(span.attributes),
                            events=[(e.name, _attributes(e.attributes)) for e in span.events],
                            status=span.status.code,
                            start_ns=span.start_time_unix_nano,
                        )
                    )
        self.exports += 1
        self._arrived.set()
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    async def wait_for(
        self,
        predicate: Callable[[list[ReceivedSpan]], bool],
        flush: Callable[[], Awaitable[object]],
        timeout: float = 10.0,
    ) -> list[ReceivedSpan]:
        """Flush the sidecars until ``predicate(spans)`` holds.

        A span ends when its request's handler returns, which may be just after the client
        got its answer; so flush, and flush again whenever a new export arrives.
        """
        async with asyncio.timeout(timeout):
            while True:
                self._arrived.clear()
                await flush()
                if predicate(self.spans):
                    return self.spans
                # Wait for the next export (a span ending later is exported by the next
                # flush; the short bound only paces re-flushing).
                try:
                    async with asyncio.timeout(0.2):
                        await self._arrived.wait()
                except TimeoutError:
                    pass

    def of(self, service: str, kind: int) -> list[ReceivedSpan]:
        return sorted(
            (s for s in self.spans if s.service == service and s.kind == kind),
            key=lambda s: s.start_ns,
        )
