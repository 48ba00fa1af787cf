"""Pure parsing of a DNS SRV answer (RFC 2782) into an ``EndpointSet``.

Input records are duck-typed like pycares' ``DNSRecord``: ``name``, ``type`` (RR type number),
``ttl`` and ``data`` (SRV: ``priority``/``weight``/``port``/``target``; A/AAAA: ``addr``).

Rules:

* every SRV record becomes one Endpoint per address of its target, with the SRV priority as
  ``Endpoint.priority`` (lower preferred) and the SRV weight as ``Endpoint.weight``. RFC 2782
  weight 0 means "very rarely, when others have weight"; Endpoint weights start at 1, so
  0 becomes 1 (such a record gets the same share as a weight-1 record);
* target addresses come from A/AAAA records (the answer's additional section, or the results
  of follow-up queries the caller merged in); a target that is itself an IP literal is used
  as is; names compare case-insensitively, with or without the trailing dot;
* a target of "." means "decidedly not available here" (RFC 2782): no endpoint. An answer made
  only of such records is a valid empty snapshot;
* a target with no address is left out; if SRV records exist but none resolves, that is an
  error (the caller keeps its last good snapshot);
* SRV port 0 cannot be dialled: the record is left out;
* an endpoint is named by its SRV target (every address of a target shares its name).

Invariant: for any input the result is an ``EndpointSet`` or a ``DiscoveryError``; nothing
else escapes. The refresh delay is the smallest TTL of the records used, clamped.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from discovery.errors import DiscoveryError
from discovery.model import Endpoint, EndpointSet

SOURCE: Final = "dns-srv"
TYPE_A: Final = 1  # RFC 1035
TYPE_AAAA: Final = 28  # RFC 3596
TYPE_SRV: Final = 33  # RFC 2782
_ROOT: Final = "."


@dataclass(frozen=True, slots=True)
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: str  # normalised: lower case, no trailing dot; "." for "not available"
    ttl: int


def parse_srv_answer(answer: object, additional: object = ()) -> EndpointSet:
    """Endpoints of an SRV ``answer`` with addresses from ``additional``; see module rules."""
    records = srv_records(answer)
    addresses = address_map(additional)
    endpoints: list[Endpoint] = []
    usable = [r for r in records if r.target != _ROOT and r.port != 0]
    for record in usable:
        for address in _addresses_of(record.target, addresses):
            endpoints.append(
                Endpoint(
                    address=address,
                    port=record.port,
                    weight=max(record.weight, 1),
                    priority=record.priority,
                    meta={"srv_target": record.target},
                    name=record.target,
                )
            )
    if usable and not endpoints:
        raise DiscoveryError("no SRV target resolved to an address")
    return EndpointSet.of(endpoints, source=SOURCE)


def srv_records(answer: object) -> list[SrvRecord]:
    """The SRV records of ``answer`` (other types are skipped); none at all is an error."""
    records = [_srv(record, i) for i, record in enumerate(_sequence(answer, "answer"))]
    found = [r for r in records if r is not None]
    if not found:
        raise DiscoveryError("the answer holds no SRV record")
    return found


def address_map(records: object) -> dict[str, list[str]]:
    """Target name -> addresses, from the A/AAAA records among ``records``."""
    addresses: dict[str, list[str]] = {}
    for index, record in enumerate(_sequence(records, "additional")):
        rtype = _int_attr(record, "type", f"additional[{index}]", 0, 65535)
        if rtype not in (TYPE_A, TYPE_AAAA):
            continue
        where = f"additional[{index}]"
        name = _normalise(_str_attr(record, "name", where))
        raw = _str_attr(getattr(record, "data", None), "addr", f"{where}.data")
        try:
            ip = ipaddress.ip_address(raw)
        except ValueError:
            raise DiscoveryError(f"{where}: {raw!r} is not an IP address") from None
        if ip.version != (4 if rtype == TYPE_A else 6):
            raise DiscoveryError(f"{where}: {raw!r} does not fit record type {rtype}")
        addresses.setdefault(name, []).append(str(ip))
    return addresses


def unresolved_targets(answer: object, additional: object) -> list[str]:
    """Targets of ``answer`` that ``additional`` gives no address for (to query A/AAAA)."""
    known = address_map(additional)
    targets: list[str] = []
    for record in srv_records(answer):
        target = record.target
        if target == _ROOT or target in known or _ip_literal(target) or target in targets:
            continue
        targets.append(target)
    return targets


def answer_ttl(answer: object, additional: object = ()) -> int:
    """Smallest TTL among the SRV records and the address records of their targets."""
    records = srv_records(answer)
    targets = {r.target for r in records}
    ttls = [r.ttl for r in records]
    for index, record in enumerate(_sequence(additional, "additional")):
        where = f"additional[{index}]"
        if _normalise(_str_attr(record, "name", where)) in targets:
            ttls.append(_int_attr(record, "ttl", where, 0, 2**31 - 1))
    return min(ttls)


def refresh_delay(ttl: int, refresh_min: float, refresh_max: float) -> float:
    """Seconds until the next query: the TTL clamped to ``[refresh_min, refresh_max]``."""
    return min(max(float(ttl), refresh_min), refresh_max)


def _srv(record: object, index: int) -> SrvRecord | None:
    where = f"answer[{index}]"
    if _int_attr(record, "type", where, 0, 65535) != TYPE_SRV:
        return None
    data = getattr(record, "data", None)
    return SrvRecord(
        priority=_int_attr(data, "priority", f"{where}.data", 0, 65535),
        weight=_int_attr(data, "weight", f"{where}.data", 0, 65535),
        port=_int_attr(data, "port", f"{where}.data", 0, 65535),
        target=_normalise(_str_attr(data, "target", f"{where}.data")),
        ttl=_int_attr(record, "ttl", where, 0, 2**31 - 1),
    )


def _addresses_of(target: str, addresses: dict[str, list[str]]) -> Iterable[str]:
    literal = _ip_literal(target)
    if literal is not None:
        return [literal]
    return addresses.get(target, [])


def _ip_literal(name: str) -> str | None:
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return None


def _normalise(name: str) -> str:
    return name.rstrip(".").lower() or _ROOT


def _sequence(value: object, where: str) -> Sequence[object]:
    if isinstance(value, (list, tuple)):
        return value
    raise DiscoveryError(f"{where}: expected a list of records, got {type(value).__name__}")


def _int_attr(obj: object, name: str, where: str, low: int, high: int) -> int:
    value = getattr(obj, name, None)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DiscoveryError(f"{where}.{name}: expected an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise DiscoveryError(f"{where}.{name}: {value} is outside {low}..{high}")
    return value


def _str_attr(obj: object, name: str, where: str) -> str:
    value = getattr(obj, name, None)
    if not isinstance(value, str):
        raise DiscoveryError(f"{where}.{name}: expected a string, got {type(value).__name__}")
    return value
