"""Talking to a Consul agent's HTTP API: connection options and a small asyncio client.

The client is python-consul2's asyncio client (``consul.aio.Consul``) with three
adjustments, each for a limitation of that library:

* its constructor reads ``CONSUL_HTTP_ADDR``/``CONSUL_HTTP_TOKEN``/``CONSUL_HTTP_SSL*`` from the
  process environment and lets them override explicit arguments (even the token), and raises
  on an IPv6 address. Pilotfish takes settings only from ``ConsulClientOptions`` (whose
  ``from_env`` reads those variables explicitly), so the client object is assembled without
  running that constructor;
* its aiohttp transport drops the client certificate and cannot take a CA file. The transport
  here keeps the library's one-session-per-request shape but passes a real ``ssl.SSLContext``;
* ``agent.service.register`` sends lower-case keys without ``Weights`` and there is no call
  for ``GET /v1/agent/service/<id>`` at all. Those two requests go through the same transport
  with a body of our own (Consul's documented ``Name``/``ID``/``Check`` shape) and our own
  status handling.

The library has no HTTP timeout of its own: every call runs under ``asyncio.timeout``. Not
``asyncio.wait_for``: on Python 3.11 it returns the answer instead of raising when the caller
is cancelled just as the answer completes (CPython gh-86296), and a watch loop cancelled that
way would poll on forever.

Invariants: every failure (refused, timeout, HTTP error status, malformed JSON, missing
``X-Consul-Index``) surfaces as ``DiscoveryError``; the ACL token travels only in the
``X-Consul-Token`` header and is masked out of every message; ``repr`` of the options never
shows it.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import consul.aio
import consul.base

from discovery.errors import DiscoveryError, scrub
from discovery.hostport import join_host_port, split_host_port

T = TypeVar("T")

DEFAULT_PORT = 8500
DEFAULT_REQUEST_TIMEOUT = 5.0
_BODY_EXCERPT = 200
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


@dataclass(frozen=True, repr=False)
class ConsulClientOptions:
    """Where the Consul agent is and how to authenticate; plain values only."""

    address: str = "127.0.0.1:8500"
    scheme: str = "http"
    token: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True

    def __post_init__(self) -> None:
        if self.scheme not in ("http", "https"):
            raise ValueError(f"scheme must be 'http' or 'https', got {self.scheme!r}")
        split_host_port(self.address, DEFAULT_PORT)
        if self.key_file and not self.cert_file:
            raise ValueError("key_file needs cert_file")

    def __repr__(self) -> str:
        token = "<set>" if self.token else None
        return (
            f"ConsulClientOptions(address={self.address!r}, scheme={self.scheme!r}, "
            f"token={token}, ca_file={self.ca_file!r}, cert_file={self.cert_file!r}, "
            f"key_file={self.key_file!r}, verify={self.verify!r})"
        )

    @property
    def base_url(self) -> str:
        host, port = split_host_port(self.address, DEFAULT_PORT)
        return f"{self.scheme}://{join_host_port(host, port)}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ConsulClientOptions:
        """Options from Consul's own environment variables, with Consul's precedence.

        ``CONSUL_HTTP_ADDR`` may carry ``http://`` or ``https://``; ``CONSUL_HTTP_SSL=true``
        forces https; a non-empty ``CONSUL_HTTP_TOKEN_FILE`` wins over ``CONSUL_HTTP_TOKEN``.
        Unlike Consul's CLI, an unparsable boolean is an error rather than "false".
        """
        env = {key: value for key, value in environ.items() if value != ""}
        address = env.get("CONSUL_HTTP_ADDR", cls.address)
        scheme = "http"
        prefix, sep, rest = address.partition("://")
        if sep:
            if prefix not in ("http", "https"):
                raise ValueError(f"CONSUL_HTTP_ADDR: unsupported scheme {prefix!r}")
            if "/" in rest:
                raise ValueError("CONSUL_HTTP_ADDR: a path prefix is not supported")
            scheme, address = prefix, rest
        if _env_bool(env, "CONSUL_HTTP_SSL", default=False):
            scheme = "https"
        token = env.get("CONSUL_HTTP_TOKEN")
        token_file = env.get("CONSUL_HTTP_TOKEN_FILE")
        if token_file:
            try:
                from_file = Path(token_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"CONSUL_HTTP_TOKEN_FILE {token_file!r}: {exc.strerror}") from None
            token = from_file or token
        return cls(
            address=address,
            scheme=scheme,
            token=token,
            ca_file=env.get("CONSUL_CACERT"),
            cert_file=env.get("CONSUL_CLIENT_CERT"),
            key_file=env.get("CONSUL_CLIENT_KEY"),
            verify=_env_bool(env, "CONSUL_HTTP_SSL_VERIFY", default=True),
        )


def go_duration(seconds: float) -> str:
    """Go ``time.ParseDuration`` text for ``seconds``: 5 -> "5s", 60 -> "1m", 0.25 -> "250ms"."""
    millis = round(seconds * 1000)
    if millis < 0:
        raise ValueError(f"a duration cannot be negative, got {seconds}")
    if millis % 1000:
        return f"{millis}ms"
    hours, rest = divmod(millis // 1000, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return text + (f"{secs}s" if secs or not text else "")


def ssl_context(options: ConsulClientOptions) -> ssl.SSLContext | None:
    """The TLS context for https (None for plain http); raises on unreadable files."""
    if options.scheme != "https":
        return None
    context = ssl.create_default_context(cafile=options.ca_file)
    if options.cert_file:
        context.load_cert_chain(options.cert_file, options.key_file)
    if not options.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class ConsulClient:
    """The Consul calls Pilotfish needs; every failure is a ``DiscoveryError``."""

    def __init__(
        self, options: ConsulClientOptions, *, request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    ) -> None:
        self.options = options
        self._timeout = request_timeout
        host, port = split_host_port(options.address, DEFAULT_PORT)
        url_host = f"[{host}]" if ":" in host else host
        transport = _Transport(url_host, port, options.scheme, ssl_context(options))
        self._consul = _Consul(transport, options.token)

    async def health_service(
        self,
        service: str,
        *,
        index: int,
        wait: float,
        passing: bool,
        tag: str | None,
        datacenter: str | None,
    ) -> tuple[int, object]:
        """``(X-Consul-Index, decoded body)`` of a (blocking when index > 0) health read."""
        what = f"GET /v1/health/service/{service}"
        call = self._consul.health.service(
            service, index=index, wait=go_duration(wait), passing=passing, tag=tag, dc=datacenter
        )
        # Consul holds a blocking read for up to wait + wait/16; give the network a second more.
        timeout = wait + wait / 16 + 1.0 if index > 0 else self._timeout
        raw_index, payload = await self._call(what, call, timeout)
        try:
            return int(raw_index), payload
        except (TypeError, ValueError):
            raise self._error(f"consul {what}: bad X-Consul-Index {raw_index!r}") from None

    async def agent_service(self, service_id: str) -> dict[str, Any] | None:
        """The agent's record of ``service_id``; None when the agent does not know it."""
        what = f"GET /v1/agent/service/{service_id}"
        response = await self._call(what, self._raw("get", f"/v1/agent/service/{service_id}"))
        if response.code == 404:
            return None
        body = self._json_body(what, response)
        if not isinstance(body, dict):
            raise self._error(f"consul {what}: expected a JSON object")
        return body

    async def register_service(self, payload: Mapping[str, object]) -> None:
        what = "PUT /v1/agent/service/register"
        response = await self._call(
            what, self._raw("put", "/v1/agent/service/register", data=json.dumps(payload))
        )
        self._expect_ok(what, response)

    async def deregister_service(self, service_id: str) -> bool:
        """True when removed, False when the agent did not know ``service_id``."""
        what = f"PUT /v1/agent/service/deregister/{service_id}"
        return bool(await self._call(what, self._consul.agent.service.deregister(service_id)))

    async def service_maintenance(self, service_id: str, enable: bool, reason: str) -> bool:
        """True when applied, False when the agent does not know ``service_id``."""
        what = f"PUT /v1/agent/service/maintenance/{service_id}"
        call = self._consul.agent.service.maintenance(
            service_id, "true" if enable else "false", reason=reason or None
        )
        return bool(await self._call(what, call))

    async def update_ttl(self, check_id: str, *, passing: bool, note: str) -> bool:
        """Pass or fail a TTL check; False when the agent does not know ``check_id``."""
        check = self._consul.agent.check
        verb = "pass" if passing else "fail"
        call = (check.ttl_pass if passing else check.ttl_fail)(check_id, notes=note or None)
        return bool(await self._call(f"PUT /v1/agent/check/{verb}/{check_id}", call))

    async def close(self) -> None:
        """Nothing is pooled (one HTTP session per request); kept for a uniform lifecycle."""

    def _raw(self, method: str, path: str, data: str = "") -> Awaitable[consul.base.Response]:
        headers = {"X-Consul-Token": self.options.token} if self.options.token else {}
        if method == "get":
            return self._consul.http.get(_response, path, headers=headers)
        return self._consul.http.put(_response, path, data=data, headers=headers)

    def _json_body(self, what: str, response: consul.base.Response) -> object:
        self._expect_ok(what, response)
        try:
            return json.loads(response.body)
        except ValueError:
            raise self._error(f"consul {what}: malformed JSON") from None

    def _expect_ok(self, what: str, response: consul.base.Response) -> None:
        if response.code != 200:
            excerpt = response.body.strip()[:_BODY_EXCERPT]
            raise self._error(f"consul {what}: HTTP {response.code} {excerpt}".rstrip())

    async def _call(self, what: str, call: Awaitable[T], timeout: float | None = None) -> T:
        limit = self._timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                return await call
        except TimeoutError:  # before OSError: TimeoutError is one
            raise self._error(f"consul {what}: no answer within {limit:.1f}s") from None
        except consul.base.ConsulException as exc:
            raise self._error(f"consul {what}: HTTP {_status_text(exc)}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise self._error(f"consul {what}: unreachable ({type(exc).__name__}: {exc})") from None
        except KeyError:
            raise self._error(f"consul {what}: answer without X-Consul-Index") from None
        except ValueError:
            raise self._error(f"consul {what}: malformed JSON") from None

    def _error(self, message: str) -> DiscoveryError:
        return DiscoveryError(scrub(message, self.options.token))


def _response(response: consul.base.Response) -> consul.base.Response:
    return response


def _status_text(exc: consul.base.ConsulException) -> str:
    # python-consul2 puts "<status> <body>" in most of its exceptions but only the body in these
    for kind, status in _STATUS_OF.items():
        if isinstance(exc, kind):
            return f"{status} {str(exc).strip()[:_BODY_EXCERPT]}"
    return str(exc).strip()[:_BODY_EXCERPT]


_STATUS_OF: dict[type[Exception], int] = {
    consul.base.ACLDisabled: 401,
    consul.base.ACLPermissionDenied: 403,
    consul.base.NotFound: 404,
    consul.base.Timeout: 599,
}


def _env_bool(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    value = env.get(name)
    if value is None:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}: {value!r} is not a boolean (true/false/1/0)")


class _Transport(consul.aio.HTTPClient):
    """python-consul2's aiohttp transport, with a real TLS context and no ``__del__`` noise."""

    def __init__(
        self, url_host: str, port: int, scheme: str, context: ssl.SSLContext | None
    ) -> None:
        consul.base.HTTPClient.__init__(self, url_host, port, scheme)
        self._ssl: ssl.SSLContext | bool = context if context is not None else True

    async def _request(
        self,
        callback: Callable[[consul.base.Response], Any],
        method: str,
        uri: str,
        data: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        connector = aiohttp.TCPConnector(ssl=self._ssl)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.request(method, uri, data=data, headers=headers) as resp,
        ):
            body = await resp.text(encoding="utf-8", errors="replace")
            return callback(consul.base.Response(resp.status, resp.headers, body, body.encode()))

    def __del__(self) -> None:
        # The library's __del__ warns about an unclosed connector on every collection; ours
        # closes each session as the request ends, so there is nothing to warn about.
        pass


class _Consul(consul.aio.Consul):
    """``consul.aio.Consul`` assembled without its environment-reading constructor."""

    def __init__(self, transport: _Transport, token: str | None) -> None:
        self.http = transport
        self.token = token
        self.dc = None
        self.consistency = "default"
        self.scheme = transport.scheme
        self.agent = consul.base.Consul.Agent(self)
        self.health = consul.base.Consul.Health(self)
