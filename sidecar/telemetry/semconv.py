"""OpenTelemetry HTTP semantic conventions for Pilotfish's spans: names, attributes, status.

Pure functions over plain values; the tracing shell calls them only for spans that record,
so an unsampled request never builds an attribute dict.

Invariants: attribute values are ``str`` or ``int``; keys are stable semantic-convention
names or live in the ``pilotfish.`` namespace; span status follows the HTTP rules — a
SERVER span is an error only for a 5xx or when no response was sent, a CLIENT span also
for a 4xx and for an attempt that got no response at all.
"""

from __future__ import annotations

from functools import lru_cache
from ipaddress import ip_address

from opentelemetry.semconv.attributes.client_attributes import CLIENT_ADDRESS
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_METHOD,
    HTTP_REQUEST_METHOD_ORIGINAL,
    HTTP_REQUEST_RESEND_COUNT,
    HTTP_RESPONSE_STATUS_CODE,
)
from opentelemetry.semconv.attributes.network_attributes import (
    NETWORK_PEER_ADDRESS,
    NETWORK_PEER_PORT,
    NETWORK_PROTOCOL_VERSION,
)
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.semconv.attributes.url_attributes import (
    URL_FULL,
    URL_PATH,
    URL_QUERY,
    URL_SCHEME,
)
from opentelemetry.semconv.attributes.user_agent_attributes import USER_AGENT_ORIGINAL

Attributes = dict[str, str | int]

KNOWN_METHODS = frozenset(
    ("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE")
)
_DEFAULT_PORTS = {"http": 80, "https": 443}

# Pilotfish's own attributes (decisions the conventions have no name for).
LISTENER = "pilotfish.listener"
CLUSTER = "pilotfish.cluster"
ENDPOINT = "pilotfish.endpoint"
BALANCER = "pilotfish.balancer"
ATTEMPT = "pilotfish.attempt"
ATTEMPTS = "pilotfish.attempts"
REQUEST_ID = "pilotfish.request_id"
RESPONSE_FLAGS = "pilotfish.response_flags"
ERROR = "pilotfish.error"


def span_name(method: str) -> str:
    """``{method}``; a method outside the known set is named ``HTTP`` (its value is unbounded)."""
    return method if method in KNOWN_METHODS else "HTTP"


def _method(attrs: Attributes, method: str) -> None:
    if method in KNOWN_METHODS:
        attrs[HTTP_REQUEST_METHOD] = method
    else:
        attrs[HTTP_REQUEST_METHOD] = "_OTHER"
        attrs[HTTP_REQUEST_METHOD_ORIGINAL] = method


def split_host(host: str, scheme: str) -> tuple[str, int | None]:
    """A ``Host`` header as (address, port); the port defaults to the scheme's."""
    if host.startswith("["):
        address, _, rest = host[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        address, sep, port_text = host.rpartition(":")
        if not sep:
            address, port_text = host, ""
    if port_text.isdigit():
        return address, int(port_text)
    return address, _DEFAULT_PORTS.get(scheme)


@lru_cache(maxsize=4096)
def is_ip(address: str) -> bool:
    """``network.peer.address`` holds an IP only; a discovered name is not one."""
    try:
        ip_address(address)
    except ValueError:
        return False
    return True


def server_attributes(
    *,
    listener: str,
    method: str,
    raw_path: str,
    scheme: str,
    host: str | None,
    peer: tuple[str, int] | None,
    forwarded_for: str | None,
    user_agent: str | None,
    version: str,
) -> Attributes:
    attrs: Attributes = {LISTENER: listener}
    _method(attrs, method)
    path, sep, query = raw_path.partition("?")
    attrs[URL_PATH] = path
    if sep:
        attrs[URL_QUERY] = query
    attrs[URL_SCHEME] = scheme
    if host:
        address, port = split_host(host, scheme)
        attrs[SERVER_ADDRESS] = address
        if port is not None:
            attrs[SERVER_PORT] = port
    if peer is not None:
        attrs[NETWORK_PEER_ADDRESS] = peer[0]
        attrs[NETWORK_PEER_PORT] = peer[1]
    client = forwarded_for.split(",", 1)[0].strip() if forwarded_for else None
    if client or peer is not None:
        attrs[CLIENT_ADDRESS] = client or peer[0]  # type: ignore[index]
    if user_agent:
        attrs[USER_AGENT_ORIGINAL] = user_agent
    attrs[NETWORK_PROTOCOL_VERSION] = version
    return attrs


def server_end_attributes(
    *,
    status: int,
    error: str | None,
    cluster: str | None,
    attempts: int,
    flags: str,
    request_id: str | None,
) -> Attributes:
    attrs: Attributes = {ATTEMPTS: attempts}
    if status:
        attrs[HTTP_RESPONSE_STATUS_CODE] = status
    kind = server_error_type(status, error)
    if kind is not None:
        attrs[ERROR_TYPE] = kind
    if error:
        attrs[ERROR] = error
    if cluster is not None:
        attrs[CLUSTER] = cluster
    if flags:
        attrs[RESPONSE_FLAGS] = flags
    if request_id:
        attrs[REQUEST_ID] = request_id
    return attrs


def client_attributes(
    *,
    method: str,
    address: str,
    port: int,
    path: str,
    attempt: int,
    cluster: str,
    endpoint: str,
    balancer: str,
) -> Attributes:
    attrs: Attributes = {}
    _method(attrs, method)
    host = f"[{address}]" if ":" in address else address
    attrs[URL_FULL] = f"http://{host}:{port}{path}"
    attrs[SERVER_ADDRESS] = address
    attrs[SERVER_PORT] = port
    if is_ip(address):
        attrs[NETWORK_PEER_ADDRESS] = address
        attrs[NETWORK_PEER_PORT] = port
    if attempt > 1:
        attrs[HTTP_REQUEST_RESEND_COUNT] = attempt - 1
    attrs[CLUSTER] = cluster
    attrs[ENDPOINT] = endpoint
    attrs[BALANCER] = balancer
    attrs[ATTEMPT] = attempt
    return attrs


def server_error_type(status: int, error: str | None) -> str | None:
    """``error.type`` of a SERVER span: the status for a 5xx, the cause when nothing was sent."""
    if status >= 500:
        return str(status)
    if status == 0:
        return error or "downstream_disconnect"
    return None


def client_error_type(status: int | None, error: str | None) -> str | None:
    """``error.type`` of a CLIENT span: the status for a 4xx/5xx, else the failure's reason."""
    if status is not None:
        return str(status) if status >= 400 else None
    return error or "_OTHER"


def client_attempt_end_attributes(status: int | None, error_type: str | None) -> Attributes:
    attrs: Attributes = {}
    if status is not None:
        attrs[HTTP_RESPONSE_STATUS_CODE] = status
    if error_type is not None:
        attrs[ERROR_TYPE] = error_type
    return attrs
