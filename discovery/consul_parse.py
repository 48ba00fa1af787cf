"""Pure parsing of Consul's ``GET /v1/health/service/<name>`` answer into an ``EndpointSet``.

Rules (one instance = one entry of the JSON array):

* address = ``Service.Address``, or ``Node.Address`` when the service has none;
* health = aggregate of every check on the entry (node-level checks such as ``serfHealth``
  included): any critical -> critical, else any warning -> warning, else passing. Maintenance
  checks (``_node_maintenance``, ``_service_maintenance:<id>``), the pseudo status
  ``maintenance`` and any status this module does not know count as critical, so an unknown
  future status never sends traffic;
* critical instances are dropped; with ``passing_only`` warning instances are dropped too,
  otherwise they stay with ``Service.Weights.Warning``; passing instances get
  ``Service.Weights.Passing`` (both default to 1 when ``Weights`` is absent). An instance whose
  applicable weight is 0 gets no traffic and is dropped;
* ``Service.Port`` absent (Consul omits a 0 port) -> the instance cannot be dialled: dropped;
* ``tags``: every requested tag must be on the instance;
* ``Service.Tags`` and ``Service.Meta`` are kept on the Endpoint;
* the endpoint's name is ``Service.ID``, or ``Node.Node`` when the ID is absent or just the
  service's name (what Consul assigns a registration that gave no ID, so it tells instances
  apart by node only); with neither, the endpoint is named by its ``host:port``.

Keys are matched case-insensitively (exact spelling first), as Consul's own decoder does; the
documented samples spell some nested keys in lower case.

Invariant: for any input whatsoever the result is an ``EndpointSet`` or a ``DiscoveryError``
naming the offending entry and field; no other exception escapes. An empty array is a valid,
empty snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from discovery.errors import DiscoveryError
from discovery.model import Endpoint, EndpointSet

SOURCE: Final = "consul"

PASSING: Final = "passing"
WARNING: Final = "warning"
CRITICAL: Final = "critical"
_KNOWN_HEALTHY = frozenset({PASSING, WARNING})
_NODE_MAINTENANCE: Final = "_node_maintenance"
_SERVICE_MAINTENANCE_PREFIX: Final = "_service_maintenance:"


def parse_health_service(
    payload: object, *, passing_only: bool, tags: Sequence[str] = ()
) -> EndpointSet:
    """Endpoints of a decoded ``/v1/health/service/<name>`` body; see the module rules."""
    if not isinstance(payload, list):
        raise DiscoveryError(f"health/service: expected a JSON array, got {_kind(payload)}")
    required = frozenset(tags)
    endpoints: list[Endpoint] = []
    for position, entry in enumerate(payload):
        endpoint = _parse_entry(entry, position, passing_only=passing_only)
        if endpoint is not None and required.issubset(endpoint.tags):
            endpoints.append(endpoint)
    return EndpointSet.of(endpoints, source=SOURCE)


def aggregate_status(checks: Sequence[tuple[str, str]]) -> str:
    """Aggregated health of ``(check_id, status)`` pairs; no checks at all is passing."""
    worst = PASSING
    for check_id, status in checks:
        if status not in _KNOWN_HEALTHY or _is_maintenance(check_id):
            return CRITICAL
        if status == WARNING:
            worst = WARNING
    return worst


def _parse_entry(entry: object, position: int, *, passing_only: bool) -> Endpoint | None:
    where = f"health/service[{position}]"
    entry_map = _mapping(entry, where)
    node = _mapping(_field(entry_map, "Node"), f"{where}.Node")
    service = _mapping(_field(entry_map, "Service"), f"{where}.Service")

    status = aggregate_status(_checks(_field(entry_map, "Checks"), f"{where}.Checks"))
    if status == CRITICAL or (passing_only and status != PASSING):
        return None
    weight = _weights(_field(service, "Weights"), f"{where}.Service.Weights")[status]
    port = _optional_int(_field(service, "Port"), f"{where}.Service.Port", 0, 65535)
    if weight == 0 or port in (None, 0):
        return None

    address = _optional_str(_field(service, "Address"), f"{where}.Service.Address")
    if not address:
        address = _optional_str(_field(node, "Address"), f"{where}.Node.Address")
    if not address:
        raise DiscoveryError(f"{where}: neither Service.Address nor Node.Address is set")
    assert port is not None
    return Endpoint(
        address=address,
        port=port,
        weight=weight,
        tags=_string_list(_field(service, "Tags"), f"{where}.Service.Tags"),
        meta=_string_map(_field(service, "Meta"), f"{where}.Service.Meta"),
        name=_instance_name(node, service, where),
    )


def _instance_name(node: Mapping[str, object], service: Mapping[str, object], where: str) -> str:
    service_id = _optional_str(_field(service, "ID"), f"{where}.Service.ID")
    service_name = _optional_str(_field(service, "Service"), f"{where}.Service.Service")
    if service_id and service_id != service_name:
        return service_id
    return _optional_str(_field(node, "Node"), f"{where}.Node.Node") or ""


def _checks(value: object, where: str) -> list[tuple[str, str]]:
    if value is None:  # Go encodes an empty slice it never allocated as null
        return []
    if not isinstance(value, list):
        raise DiscoveryError(f"{where}: expected an array, got {_kind(value)}")
    pairs: list[tuple[str, str]] = []
    for index, check in enumerate(value):
        check_map = _mapping(check, f"{where}[{index}]")
        check_id = _optional_str(_field(check_map, "CheckID"), f"{where}[{index}].CheckID") or ""
        status = _optional_str(_field(check_map, "Status"), f"{where}[{index}].Status")
        if status is None:
            raise DiscoveryError(f"{where}[{index}].Status is missing")
        pairs.append((check_id, status))
    return pairs


def _weights(value: object, where: str) -> dict[str, int]:
    if value is None:
        return {PASSING: 1, WARNING: 1}
    weights = _mapping(value, where)
    passing = _optional_int(_field(weights, "Passing"), f"{where}.Passing", 0, 2**31)
    warning = _optional_int(_field(weights, "Warning"), f"{where}.Warning", 0, 2**31)
    return {PASSING: 1 if passing is None else passing, WARNING: 1 if warning is None else warning}


def _is_maintenance(check_id: str) -> bool:
    return check_id == _NODE_MAINTENANCE or check_id.startswith(_SERVICE_MAINTENANCE_PREFIX)


def _field(obj: Mapping[str, object], name: str) -> object:
    if name in obj:
        return obj[name]
    folded = name.casefold()
    for key, value in obj.items():
        if isinstance(key, str) and key.casefold() == folded:
            return value
    return None


def _mapping(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise DiscoveryError(f"{where}: expected an object, got {_kind(value)}")
    return value


def _optional_str(value: object, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise DiscoveryError(f"{where}: expected a string, got {_kind(value)}")


def _optional_int(value: object, where: str, low: int, high: int) -> int | None:
    if value is None:
        return None
    # bool is an int subclass and JSON floats like 8080.0 are not what Consul sends
    if isinstance(value, bool) or not isinstance(value, int):
        raise DiscoveryError(f"{where}: expected an integer, got {_kind(value)}")
    if not low <= value <= high:
        raise DiscoveryError(f"{where}: {value} is outside {low}..{high}")
    return value


def _string_list(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise DiscoveryError(f"{where}: expected an array of strings, got {_kind(value)}")
    return tuple(value)


def _string_map(value: object, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise DiscoveryError(f"{where}: expected an object of strings, got {_kind(value)}")
    return dict(value)


def _kind(value: object) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)
