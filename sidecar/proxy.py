"""The listener side of a proxy hop: a downstream request in, the upstream answer streamed out.

``ProxyHandler`` reads its listener's router from the current route table once, turns a
downstream request into an ``Exchange`` (headers filtered, body buffered whole before
anything goes upstream when it is small enough to replay), runs it through its route's
stack, and streams the upstream answer back. A WebSocket upgrade the
upstream accepts (101) becomes a tunnel for the rest of the connection's life. Failures
the sidecar decides are answered with their status, a one-line body and
``x-pilotfish-error``. Nothing here parses config or logs on the success path.
"""

from __future__ import annotations

import random

from multidict import CIMultiDict

from sidecar.listener.h1_server import H1Connection
from sidecar.listener.request import DownstreamRequest
from sidecar.pipeline.errors import (
    BadRequest,
    Overflow,
    ProxyError,
    UpstreamReset,
)
from sidecar.pipeline.exchange import Exchange
from sidecar.pipeline.headers import forward_fields, request_fields
from sidecar.pipeline.request_body import request_body
from sidecar.routing import Route, Routing
from sidecar.telemetry.observer import NULL_OBSERVER, Observer
from sidecar.transport.base import UpstreamResponse
from sidecar.transport.request_head import RequestHead

SMALL_BODY = 64 * 1024  # answers up to this size are read whole and written in one go
_NO_BODY_STATUSES = frozenset((204, 304))
# Request ids need to be unique, not secret: a PRNG seeded from the OS, no syscall each.
_request_ids = random.Random()
_NOTHING: frozenset[bytes] = frozenset()
_EMPTY_ID = frozenset((b"x-request-id",))  # an empty id given is replaced, not repeated


class ProxyHandler:
    """The handler of one proxy listener: reads the route table once per request."""

    def __init__(
        self,
        listener: str,
        routing: Routing,
        *,
        observer: Observer = NULL_OBSERVER,
        scheme: str = "http",
        report_attempts: bool = True,
    ) -> None:
        self.listener = listener
        self.routing = routing
        self.observer = observer
        self.scheme = scheme
        self.proto_field = b"X-Forwarded-Proto: %s\r\n" % scheme.encode("ascii")
        self.report_attempts = report_attempts

    async def __call__(self, request: DownstreamRequest, out: H1Connection) -> None:
        observer = self.observer
        ctx = observer.request_start(self.listener, request)  # observer hook
        ex: Exchange | None = None
        status = 0
        error: str | None = "downstream_disconnect"
        try:
            try:
                if not request.raw_path.startswith("/"):
                    # The listener took absolute-form targets apart: CONNECT and "*" are left.
                    out.keep_alive = False
                    raise BadRequest("CONNECT and asterisk-form request targets are refused")
                route = self.routing.table.router(self.listener)(request)
                cluster = route.cluster
                limit = cluster.limit  # the one acquired is released (a reload may swap it)
                if not limit.try_acquire():
                    raise Overflow(f"cluster {cluster.name!r} has {limit.limit} requests in flight")
                try:
                    ex = self._exchange(request, route, ctx)
                    ex.task = out.task  # the task serving the request: timeouts cancel it
                    if request.has_body:
                        # Buffered whole before anything goes upstream, or streamed (see
                        # request_body); a stalled or broken body raises the client's error.
                        ex.body, ex.replayable = await request_body(request, route.max_replay)
                    resp = await route.stack(ex)
                    if resp.status == 101:
                        await self._tunnel(request, out, ex, route, resp)
                    else:
                        await self._respond(request, out, ex, route, resp)
                    status, error = resp.status, None
                finally:
                    limit.release()
            except ProxyError as exc:
                status, error = await self._failed(exc, out, ex)
        finally:
            observer.request_end(
                ctx, self.listener, request, ex, status, error, out.bytes_sent
            )  # observer hook

    async def _failed(
        self, exc: ProxyError, out: H1Connection, ex: Exchange | None
    ) -> tuple[int, str | None]:
        """Answer a failure the sidecar decided; the status and reason it was told as."""
        if ex is not None:
            ex.add_flag(exc.flag)
        if out.started or not exc.answered:  # nothing left to say but to cut the connection
            out.abort()
            return (exc.status if exc.answered else 0), exc.reason
        if exc.closes_connection:
            out.keep_alive = False
        attempts = len(ex.attempts) if ex is not None and self.report_attempts else None
        await _error(out, exc.status, exc.reason, str(exc), attempts)
        return exc.status, exc.reason

    def _exchange(self, request: DownstreamRequest, route: Route, ctx: object) -> Exchange:
        """The request as it goes upstream: its head as bytes (see ``request_fields``)."""
        fields = request.fields
        noted = fields.noted
        given_id = noted.get(b"x-request-id")
        if given_id:
            request_id = given_id.decode("latin-1")
            fresh_id: bytes | None = None
            withhold = _NOTHING
        else:
            request_id = f"{_request_ids.getrandbits(128):032x}"
            fresh_id = request_id.encode()
            withhold = _EMPTY_ID if given_id is not None else _NOTHING
        host = request.host
        host_bytes = host.encode("utf-8", "surrogateescape") if host is not None else None
        sent_host = route.rewrite_host or host_bytes
        websocket = request.upgrade == "websocket"
        client_ip = request.client_ip
        block = request_fields(
            fields,
            route.request_rules,
            host=sent_host,
            forwarded_host=host_bytes,
            forwarded_for=client_ip.encode("latin-1"),
            proto_field=self.proto_field,
            request_id=fresh_id,
            upgrade=noted.get(b"upgrade") if websocket else None,
            withhold=withhold,
        )
        path = request.raw_path
        strip = route.strip_prefix
        if strip and (
            path == strip or path.startswith(strip + "/") or path.startswith(strip + "?")
        ):
            path = path[len(strip) :]
            if not path.startswith("/"):
                path = "/" + path
        head = RequestHead(
            request.method,
            path,
            block,
            has_host=sent_host is not None,
            length=request.content_length,
            upgrade=websocket,
        )
        ex = Exchange(head, None, True, client_ip, request_id, route, ctx)
        traceparent = noted.get(b"traceparent")
        if traceparent is not None:  # as it came, unless the observer's tracing decides
            ex.trace_fields = b"traceparent: %s\r\n" % traceparent
        if route.key_of is not None:
            ex.hash_key = route.key_of(request, client_ip)
        return ex

    async def _respond(
        self,
        request: DownstreamRequest,
        out: H1Connection,
        ex: Exchange,
        route: Route,
        resp: UpstreamResponse,
    ) -> None:
        fields = forward_fields(resp.fields, route.response_rules)
        if self.report_attempts:
            fields += b"x-pilotfish-attempts: %d\r\n" % len(ex.attempts)
        length = resp.content_length
        if request.method == "HEAD" or resp.status in _NO_BODY_STATUSES:
            resp.release()
            await out.start_fields(resp.status, fields, length, resp.reason)
            await out.finish()
            return
        if length is not None and length <= SMALL_BODY:
            body = await resp.read()  # a broken body raises, and the endpoint is charged
            resp.release()
            await out.send_fields(resp.status, fields, body, resp.reason)
            return
        await out.start_fields(resp.status, fields, length, resp.reason)
        try:
            async for chunk in resp.iter_chunks():
                await out.write(chunk)
        except ProxyError:  # settled as the endpoint's failure by the response itself
            resp.close()
            ex.add_flag("UPE")
            out.abort()  # headers are gone already: cutting the connection is the signal
            return
        except BaseException:
            resp.close()
            ex.add_flag("DC")
            raise
        resp.release()
        await out.finish()

    async def _tunnel(
        self,
        request: DownstreamRequest,
        out: H1Connection,
        ex: Exchange,
        route: Route,
        resp: UpstreamResponse,
    ) -> None:
        """The upstream switched protocols: relay bytes both ways until either side ends."""
        if request.upgrade != "websocket":
            resp.close()
            raise UpstreamReset("the upstream switched protocols, which was not asked for")
        protocol = resp.headers.get("Upgrade") or "websocket"
        fields = forward_fields(resp.fields, route.response_rules)
        try:
            await out.switch(fields, protocol)
        except BaseException:
            resp.close()
            raise
        tunnel = ex.tunnel = resp.tunnel(out.start_tunnel)
        await tunnel.wait()
        out.bytes_sent = tunnel.bytes_out


async def _error(
    out: H1Connection, status: int, reason: str, detail: str, attempts: int | None
) -> None:
    headers = CIMultiDict({"Content-Type": "text/plain", "x-pilotfish-error": reason})
    if attempts is not None:
        headers["x-pilotfish-attempts"] = str(attempts)
    await out.send(status, headers, f"{reason}: {detail}\n".encode())
