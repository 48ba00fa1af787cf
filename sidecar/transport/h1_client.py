"""The fast upstream transport: pooled HTTP/1.1 on ``asyncio.Protocol`` and httptools.

``H1Transport.send`` writes the request and returns an ``H1Response`` once the status line
and headers arrived; the body is read through it. One ``EndpointPool`` per ``host:port``.

Invariants:
- The request head is one bytes object (a ``RequestHead`` and per-attempt fields, joined),
  written with a bytes body in one call. The only fields added are ``Host`` (when the head
  has none), ``Content-Length`` and ``Transfer-Encoding``; a streamed body keeps its
  declared length (exactly that many bytes are copied) or goes out chunked, written
  under the transport's flow control.
- A pooled connection the upstream closed while it sat idle fails the next request before
  any byte of an answer arrives. Such a request is sent once more, on a new connection,
  when its body can be replayed (none, or bytes), as every keep-alive client does. A
  streamed body has been consumed by then, so that request fails with ``UpstreamReset``.
- A connection goes back to its pool only when the answer was read to the end and the
  request written whole; a cancelled or failed send or read drops it.
- Failures surface only as ``ConnectFailure`` and ``UpstreamReset`` (``InternalError`` for a
  fault of our own). A streamed body whose reader fails with a ``ProxyError`` of its own
  (the client stopped sending: ``RequestTimeout``; broke its framing: ``BadRequest``; left:
  ``DownstreamDisconnect``) fails the exchange with that error, so the endpoint is not
  blamed for it.
- The response tells the ``ResponseEnd`` it watches how its body ended, exactly once:
  read whole (or none to read), broken by a ``ProxyError``, or dropped before its end.
- An answer ``101`` to a request carrying ``Upgrade`` is the last HTTP on its connection:
  ``tunnel`` hands the socket over and the pool never sees it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from multidict import CIMultiDict, CIMultiDictProxy

from discovery.model import Endpoint
from resilience.limits import PendingLimit
from sidecar.pipeline.errors import DownstreamDisconnect, ProxyError, UpstreamReset
from sidecar.transport.base import ResponseEnd
from sidecar.transport.h1_pool import EndpointPool
from sidecar.transport.h1_protocol import H1Connection
from sidecar.transport.request_head import RequestHead

if TYPE_CHECKING:
    from sidecar.tunnel import Tunnel

_BODY_METHODS = frozenset(("POST", "PUT", "PATCH"))
_SMALL_WRITE = 16 * 1024  # a body up to this size is copied behind the head: one send


class H1Response:
    __slots__ = (
        "_conn",
        "_end",
        "_headers",
        "_pool",
        "content_length",
        "fields",
        "reason",
        "status",
    )

    def __init__(self, conn: H1Connection, pool: EndpointPool) -> None:
        self._conn: H1Connection | None = conn
        self._pool = pool
        self._end: ResponseEnd | None = None
        self.status = conn.status
        self.reason = conn.reason
        self.fields = conn.fields
        self._headers: CIMultiDictProxy[str] | None = None
        self.content_length = conn.content_length

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """The header fields as a multidict, decoded on first use (the proxy reads
        ``fields``: bytes in, bytes out)."""
        headers = self._headers
        if headers is None:
            headers = self._headers = CIMultiDictProxy(
                CIMultiDict(
                    (name.decode("latin-1"), value.decode("utf-8", "surrogateescape"))
                    for name, value in self.fields
                )
            )
        return headers

    def watch(self, end: ResponseEnd) -> None:
        self._end = end

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if conn is None:
            return
        try:
            while chunk := await conn.next_chunk():
                yield chunk
        except ProxyError as exc:
            self._broken(exc)
            raise
        except BaseException:
            self.close()
            raise
        self._ended()

    async def read(self) -> bytes:
        conn = self._conn
        if conn is None:
            return b""
        try:
            data = await conn.next_chunk()
            if data and not conn.message_done:
                parts = [data]
                while more := await conn.next_chunk():
                    parts.append(more)
                data = b"".join(parts)
            # else the usual case: the whole body came with the headers
        except ProxyError as exc:
            self._broken(exc)
            raise
        except BaseException:
            self.close()
            raise
        self._ended()
        return data

    def release(self) -> None:
        conn = self._conn
        if conn is not None:
            self._conn = None
            self._pool.checkin(conn)  # closes it unless the exchange ended cleanly
        self._ended()  # read to its end, or a response without a body

    def close(self) -> None:
        conn = self._conn
        if conn is not None:
            self._conn = None
            conn.close()
            conn.finish()
        end = self._end
        if end is not None:
            self._end = None
            end.abandoned()

    def tunnel(self, start: Callable[[asyncio.Transport, bytes], Tunnel]) -> Tunnel:
        conn = self._conn
        if conn is None or not conn.upgraded or conn.transport is None:
            raise UpstreamReset("the upgraded connection is gone")
        self._conn = None
        tunnel = start(conn.transport, conn.take_early())
        conn.tunnel = tunnel
        self._ended()
        return tunnel

    def _ended(self) -> None:
        end = self._end
        if end is not None:
            self._end = None
            end.ended()

    def _broken(self, error: ProxyError) -> None:
        end = self._end
        self._end = None
        self.close()
        if end is not None:
            end.failed(error)


class H1Transport:
    __slots__ = (
        "_connect_timeout",
        "_idle_timeout",
        "_max_connections",
        "_pending",
        "_pools",
        "_stream_idle_timeout",
    )

    def __init__(
        self,
        *,
        connect_timeout: float,
        idle_timeout: float,
        stream_idle_timeout: float = 0.0,
        max_connections: int = 1024,
        max_pending: int = 1024,
    ) -> None:
        self._connect_timeout = connect_timeout
        self._idle_timeout = idle_timeout
        self._stream_idle_timeout = stream_idle_timeout
        self._max_connections = max_connections
        # Shared by every endpoint of the cluster, like Envoy's max_pending_requests.
        self._pending = PendingLimit(max_pending)
        self._pools: dict[str, EndpointPool] = {}

    def pool(self, endpoint: Endpoint) -> EndpointPool:
        pool = self._pools.get(endpoint.id)
        if pool is None:
            pool = self._pools[endpoint.id] = EndpointPool(
                endpoint.address,
                endpoint.port,
                endpoint.id,
                connect_timeout=self._connect_timeout,
                idle_timeout=self._idle_timeout,
                stream_idle_timeout=self._stream_idle_timeout,
                loop=asyncio.get_running_loop(),
                max_connections=self._max_connections,
            )
        return pool

    async def send(
        self, endpoint: Endpoint, head: RequestHead, body: Any, extra: bytes = b""
    ) -> H1Response:
        pool = self.pool(endpoint)
        data, payload, length = encode_request(head, body, endpoint.id, extra)
        is_head = head.method == "HEAD"
        upgrade = head.upgrade
        conn, reused = await pool.acquire(self._pending)
        if not reused:
            return H1Response(await _exchange(conn, is_head, upgrade, data, payload, length), pool)
        try:
            return H1Response(await _exchange(conn, is_head, upgrade, data, payload, length), pool)
        except UpstreamReset:
            if conn.received_any or not (payload is None or isinstance(payload, bytes)):
                raise
        # The reused connection was closed by the upstream while idle: see the docstring.
        conn = await pool.connect()
        return H1Response(await _exchange(conn, is_head, upgrade, data, payload, length), pool)

    def retire(self) -> None:
        """Replaced by another transport: requests in flight finish, nothing is pooled."""
        self._idle_timeout = 0.0
        for pool in self._pools.values():
            pool.retire()

    async def close(self) -> None:
        pools = list(self._pools.values())
        self._pools.clear()
        for pool in pools:
            await pool.close()


async def _exchange(
    conn: H1Connection, is_head: bool, upgrade: bool, head: bytes, payload: Any, length: int | None
) -> H1Connection:
    conn.begin(is_head, upgrade)
    try:
        if payload is None:
            conn.write(head)
            conn.request_sent = True
        elif isinstance(payload, bytes):
            if len(payload) <= _SMALL_WRITE:
                conn.write(head + payload)
            else:
                conn.writelines((head, payload))
            conn.request_sent = True
        else:
            conn.write(head)
            conn.writer = asyncio.get_running_loop().create_task(
                _write_stream(conn, payload, length)
            )
        await conn.wait_headers()
    except BaseException:
        conn.close()
        conn.finish()
        raise
    return conn


async def _write_stream(conn: H1Connection, body: Any, length: int | None) -> None:
    """Copies a streamed body upstream; it runs beside the wait for the answer."""
    try:
        read = body.readany if hasattr(body, "readany") else body.__aiter__().__anext__
        if length is None:
            while chunk := await _next(read):
                conn.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
                await conn.drain()
            conn.write(b"0\r\n\r\n")
        else:
            left = length
            while left > 0:
                chunk = await _next(read)
                if not chunk:
                    raise UpstreamReset("the request body ended before its Content-Length")
                if len(chunk) > left:
                    chunk = chunk[:left]
                left -= len(chunk)
                conn.write(chunk)
                if left:
                    await conn.drain()
        conn.request_sent = True
    except ProxyError as exc:
        conn.fail(exc)
    except asyncio.CancelledError:
        raise
    except ConnectionResetError:  # only the body's reader raises it: the client is gone
        conn.fail(DownstreamDisconnect("the client left before sending its whole body"))
    except Exception as exc:
        conn.fail(UpstreamReset(f"the request body could not be sent: {exc!r}"))
    finally:
        if conn.writer is asyncio.current_task():
            conn.writer = None


async def _next(read: Any) -> bytes:
    try:
        chunk = await read()
    except StopAsyncIteration:
        return b""
    return bytes(chunk) if not isinstance(chunk, bytes) else chunk


_CONTENT_LENGTH_0 = b"Content-Length: 0\r\n"
_CHUNKED = b"Transfer-Encoding: chunked\r\n"


def encode_request(
    head: RequestHead, body: Any, authority: str, extra: bytes = b""
) -> tuple[bytes, Any, int | None]:
    """The request's head as sent (its line, a Host field when it has none, its fields,
    ``extra``, the framing), the body as bytes or a stream, and the streamed byte count."""
    length: int | None = None
    if body is None:
        framing = _CONTENT_LENGTH_0 if head.method in _BODY_METHODS else b""
    elif type(body) is bytes:
        framing = b"Content-Length: %d\r\n" % len(body)
    elif isinstance(body, bytearray | memoryview | str):
        body = body.encode() if isinstance(body, str) else bytes(body)
        framing = b"Content-Length: %d\r\n" % len(body)
    elif not (hasattr(body, "readany") or hasattr(body, "__aiter__")):
        raise TypeError(f"a request body is bytes, a StreamReader or async-iterable, not {body!r}")
    elif head.length is not None:
        length = head.length
        framing = b"Content-Length: %d\r\n" % length
    else:
        framing = _CHUNKED
    host = b"" if head.has_host else b"Host: %s\r\n" % authority.encode("ascii")
    return b"".join((head.line, host, head.fields, extra, framing, b"\r\n")), body, length
