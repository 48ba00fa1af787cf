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
from sidecar.pipeline.headers import forward_fields, forwardable
from sidecar.pipeline.request_body import request_body
from sidecar.routing import Route, Routing
from sidecar.telemetry.observer import NULL_OBSERVER, Observer
from sidecar.transport.base import UpstreamResponse

SMALL_BODY = 64 * 1024  # answers up to this size are read whole and written in one go
_NO_BODY_STATUSES = frozenset((204, 304))
# Request ids need to be unique, not secret: a PRNG seeded from the OS, no syscall each.
_request_ids = random.Random()


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
        self.report_attempts = report_attempts

    async def __call__(self, request: DownstreamRequest, out: H1Connection) -> None:
        observer = self.observer
        ctx = observer.request_start(self.listener, request)  # observer hook
        holder: list[Exchange] = []
        status = 0
        error: str | None = "downstream_disconnect"
        try:
            status, error = await self._handle(request, out, ctx, holder)
        finally:
            observer.request_end(
                ctx,
                self.listener,
                request,
                holder[0] if holder else None,
                status,
                error,
                out.bytes_sent,
            )  # observer hook

    async def _handle(
        self, request: DownstreamRequest, out: H1Connection, ctx: object, holder: list[Exchange]
    ) -> tuple[int, str | None]:
        ex: Exchange | None = None
        try:
            if not request.raw_path.startswith("/"):
                # The listener took absolute-form targets apart: CONNECT and "*" are left.
                out.keep_alive = False
                raise BadRequest("CONNECT and asterisk-form request targets are refused")
            route = self.routing.table.router(self.listener)(request)
            cluster = route.cluster
            limit = cluster.limit  # the one acquired is the one released (a reload may swap it)
            if not limit.try_acquire():
                raise Overflow(f"cluster {cluster.name!r} has {limit.limit} requests in flight")
            try:
                ex = await self._exchange(request, route, ctx, holder)
                ex.task = out.task  # the connection's task serves the request: timeouts cancel it
                resp = await route.stack(ex)
                status = resp.status
                if status == 101:
                    await self._tunnel(request, out, ex, route, resp)
                    return status, None
                await self._respond(request, out, ex, route, resp)
                return status, None
            finally:
                limit.release()
        except ProxyError as exc:
            ex = holder[0] if holder else None
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

    async def _exchange(
        self, request: DownstreamRequest, route: Route, ctx: object, holder: list[Exchange]
    ) -> Exchange:
        headers = forwardable(request.headers, route.request_rules)
        if request.upgrade == "websocket":  # hop-by-hop, yet this hop must ask for it again
            headers["Connection"] = "Upgrade"
            headers["Upgrade"] = request.headers["Upgrade"]
        client_ip = request.client_ip
        prior = headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{prior}, {client_ip}" if prior else client_ip
        headers.setdefault("X-Forwarded-Proto", self.scheme)
        host = request.headers.get("Host")
        if host:
            headers.setdefault("X-Forwarded-Host", host)
        request_id = headers.get("x-request-id")
        if not request_id:
            request_id = f"{_request_ids.getrandbits(128):032x}"
            headers["x-request-id"] = request_id
        if route.rewrite_host:
            headers["Host"] = route.rewrite_host
        path = request.raw_path
        if route.strip_prefix and (
            path == route.strip_prefix
            or path.startswith(route.strip_prefix + "/")
            or path.startswith(route.strip_prefix + "?")
        ):
            path = path[len(route.strip_prefix) :]
            if not path.startswith("/"):
                path = "/" + path
        ex = Exchange(
            request.method,
            path,
            headers,
            None,
            True,
            client_ip,
            request_id,
            route,
            ctx,
        )
        holder.append(ex)
        if request.body_exists:
            # Buffered whole before anything goes upstream, or streamed (see request_body);
            # a stalled or broken body raises the client's error here.
            ex.body, ex.replayable = await request_body(request, route.max_replay)
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
