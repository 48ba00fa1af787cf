"""Request-level rules of the Consul HTTP double, free of HTTP plumbing.

Parsing as Consul does it (Go durations, ``strconv.ParseBool``, case-insensitive JSON field
names), the check definitions the agent accepts, and Consul's error texts (agent/acl.go,
agent/agent_endpoint.go, agent/http.go; collected in tests/fixtures/consul/http-semantics.json).
A rule that refuses a request raises ``ApiError`` with Consul's status and text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tests.discovery.consul_double_state import CRITICAL, CheckState, ServiceState

ANONYMOUS_ACCESSOR = "00000000-0000-0000-0000-000000000002"
TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
DEFAULT_MAINTENANCE_REASON = (
    "Maintenance mode is enabled for this service, but no reason was provided. "
    "This is a default message."
)
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class AclToken:
    accessor_id: str
    write: bool = True


ANONYMOUS = AclToken(ANONYMOUS_ACCESSOR, write=False)
ROOT = AclToken("root")  # every request's token while ACLs are disabled


class ApiError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"{status} {text}")
        self.status = status
        self.text = text


def request_token(
    tokens: Mapping[str, AclToken] | None, query: Mapping[str, str], headers: Mapping[str, str]
) -> AclToken:
    """The token of a request: ``?token``, then ``X-Consul-Token``, then a Bearer token."""
    if tokens is None:
        return ROOT
    secret = query.get("token") or headers.get("X-Consul-Token")
    auth = headers.get("Authorization", "")
    if not secret and auth.startswith("Bearer "):
        secret = auth.removeprefix("Bearer ").strip()
    if not secret:
        return ANONYMOUS
    token = tokens.get(secret)
    if token is None:
        raise ApiError(403, "ACL not found")
    return token


def parse_go_duration(text: str) -> float:
    """Seconds of a Go duration string; raises ValueError as time.ParseDuration would."""
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(text):
        match = _DURATION.match(text, pos)
        if match is None:
            raise ValueError(f"time: invalid duration {text!r}")
        total += float(match.group(1)) * _UNIT[match.group(2)]
        pos = match.end()
    if pos == 0:
        raise ValueError(f"time: invalid duration {text!r}")
    return total


def field(body: Mapping[str, Any], key: str) -> Any:
    """Case-insensitive field lookup, as Go's encoding/json matches struct fields."""
    if key in body:
        return body[key]
    folded = key.casefold()
    return next((v for k, v in body.items() if k.casefold() == folded), None)


def permission_denied(accessor_id: str, permission: str, service: str) -> ApiError:
    return ApiError(
        403,
        f"Permission denied: token with AccessorID '{accessor_id}' lacks "
        f"permission '{permission}' on \"{service}\"",
    )


def unknown_service(service_id: str) -> ApiError:
    return ApiError(
        404,
        f'Unknown service ID "{service_id}". Ensure that the service ID is passed, '
        "not the service name.",
    )


def unknown_check(check_id: str) -> ApiError:
    return ApiError(
        404,
        f'Unknown check ID "{check_id}". Ensure that the check ID is passed, not the check name.',
    )


def service_from_registration(body: object, node: str) -> tuple[ServiceState, object]:
    """The service of a ``/v1/agent/service/register`` body and its raw ``Check``."""
    if not isinstance(body, dict):
        raise ApiError(400, "Request decode failed: expected a JSON object")
    name = field(body, "Name")
    if not isinstance(name, str) or not name:
        raise ApiError(400, "Missing service name")
    service = ServiceState(
        node,
        field(body, "ID") or name,
        name,
        field(body, "Address") or "",
        int(field(body, "Port") or 0),
        list(field(body, "Tags") or []),
        dict(field(body, "Meta") or {}),
        local=True,
    )
    weights = field(body, "Weights")
    if isinstance(weights, dict):
        service.weights = {"Passing": 1, "Warning": 1, **weights}
    tagged = field(body, "TaggedAddresses")
    if isinstance(tagged, dict):
        service.tagged_addresses = {
            name: {"Address": field(value, "Address"), "Port": field(value, "Port")}
            for name, value in tagged.items()
            if isinstance(value, dict)
        }
    return service, field(body, "Check")


def check_from_definition(definition: Mapping[str, Any], service: ServiceState) -> CheckState:
    """The check a service registration defines; TTL and HTTP checks are supported."""
    if field(definition, "Args") or field(definition, "ScriptArgs"):
        raise ApiError(
            500,
            "Scripts are disabled on this agent from remote calls; to enable, "
            "configure 'enable_script_checks' to true",
        )
    durations: dict[str, float] = {}
    for key in ("Interval", "Timeout", "DeregisterCriticalServiceAfter", "TTL"):
        value = field(definition, key)
        if value:
            try:
                durations[key] = parse_go_duration(value)
            except (TypeError, ValueError) as exc:
                raise ApiError(400, f"Request decode failed: {exc}") from None
    check = CheckState(
        service.node,
        field(definition, "CheckID") or f"service:{service.service_id}",
        field(definition, "Name") or f"Service '{service.name}' check",
        field(definition, "Status") or CRITICAL,
        service_id=service.service_id,
        service_name=service.name,
        service_tags=list(service.tags),
        local=True,
    )
    if "TTL" in durations:
        check.type, check.ttl = "ttl", durations["TTL"]
    elif field(definition, "HTTP"):
        if not durations.get("Interval"):
            raise ApiError(400, "Invalid check: Interval must be > 0")
        check.type = "http"
        check.interval = field(definition, "Interval")
        check.timeout = field(definition, "Timeout") or ""
    else:
        raise ApiError(400, "Invalid check: unsupported check type")
    return check
