"""The state behind the Consul HTTP double: nodes, service instances, checks, raft indexes.

Mirrors what Consul's state store does for the endpoints the double serves:

* every write takes the next raft index; a service name's index moves when its instances,
  their checks, their node or the node's node-level checks change (``touch``);
* a service name with no instance answers with the "last extinction" index (set when the
  last instance of any service went away), else with the highest index of the store;
* check status changes move the index; output-only changes do not (Consul syncs those
  to the catalog lazily);
* JSON shapes follow Consul's structs (``ServiceNode``/``HealthCheck``/``AgentService``):
  ``Service.Port`` omitted when 0, node-level checks listed before service checks, service
  ``TaggedAddresses`` with ``Address``/``Port`` keys.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

PASSING, WARNING, CRITICAL = "passing", "warning", "critical"
STATUSES = (PASSING, WARNING, CRITICAL)


@dataclass
class NodeState:
    name: str
    address: str
    node_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    meta: dict[str, str] = field(default_factory=lambda: {"consul-network-segment": ""})
    create_index: int = 0
    modify_index: int = 0


@dataclass
class ServiceState:
    node: str
    service_id: str
    name: str
    address: str = ""
    port: int = 0
    tags: list[str] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=lambda: {"Passing": 1, "Warning": 1})
    tagged_addresses: dict[str, dict[str, Any]] = field(default_factory=dict)
    local: bool = False  # registered through this agent's HTTP API
    create_index: int = 0
    modify_index: int = 0


@dataclass
class CheckState:
    node: str
    check_id: str
    name: str
    status: str = CRITICAL
    notes: str = ""
    output: str = ""
    service_id: str = ""
    service_name: str = ""
    service_tags: list[str] = field(default_factory=list)
    type: str = ""
    interval: str = ""
    timeout: str = ""
    ttl: float | None = None
    local: bool = False
    create_index: int = 0
    modify_index: int = 0


class ConsulState:
    def __init__(self, datacenter: str, first_index: int = 10) -> None:
        self.datacenter = datacenter
        self.raft_index = first_index
        self.nodes: dict[str, NodeState] = {}
        self.services: dict[tuple[str, str], ServiceState] = {}
        self.checks: dict[tuple[str, str], CheckState] = {}
        self._service_index: dict[str, int] = {}
        self._extinction: int | None = None

    # -- indexes -------------------------------------------------------------------------
    def service_index(self, name: str) -> int:
        if name in self._service_index:
            return self._service_index[name]
        return self._extinction if self._extinction is not None else self.raft_index

    def touch(self, names: Iterable[str]) -> int:
        self.raft_index += 1
        for name in names:
            if any(s.name == name for s in self.services.values()):
                self._service_index[name] = self.raft_index
            elif self._service_index.pop(name, None) is not None:
                self._extinction = self.raft_index
        return self.raft_index

    def rewind(self, to: int) -> None:
        """A snapshot restore of an older state: every index at most ``to``."""
        self.raft_index = to
        for name, index in self._service_index.items():
            self._service_index[name] = min(index, to)
        if self._extinction is not None:
            self._extinction = min(self._extinction, to)

    # -- writes --------------------------------------------------------------------------
    def ensure_node(self, name: str, address: str) -> NodeState:
        node = self.nodes.get(name)
        if node is None:
            node = self.nodes[name] = NodeState(name, address)
            node.create_index = node.modify_index = self.touch(())
            self.put_check(
                CheckState(
                    name,
                    "serfHealth",
                    "Serf Health Status",
                    PASSING,
                    output="Agent alive and reachable",
                )
            )
        return node

    def put_service(self, service: ServiceState) -> None:
        key = (service.node, service.service_id)
        old = self.services.get(key)
        self.services[key] = service
        names = {service.name} | ({old.name} if old else set())
        service.modify_index = self.touch(names)
        service.create_index = old.create_index if old else service.modify_index

    def remove_service(self, node: str, service_id: str) -> ServiceState | None:
        service = self.services.pop((node, service_id), None)
        if service is None:
            return None
        for key in [
            k for k, c in self.checks.items() if k[0] == node and c.service_id == service_id
        ]:
            del self.checks[key]
        self.touch({service.name})
        return service

    def put_check(self, check: CheckState) -> None:
        old = self.checks.get((check.node, check.check_id))
        self.checks[(check.node, check.check_id)] = check
        check.modify_index = self.touch(self._names_affected_by(check))
        check.create_index = old.create_index if old else check.modify_index

    def remove_check(self, node: str, check_id: str) -> None:
        check = self.checks.pop((node, check_id), None)
        if check is not None:
            self.touch(self._names_affected_by(check))

    def set_status(self, check: CheckState, status: str, output: str) -> None:
        changed = check.status != status
        check.status, check.output = status, output
        if changed:
            check.modify_index = self.touch(self._names_affected_by(check))

    def _names_affected_by(self, check: CheckState) -> set[str]:
        if check.service_id:
            return {check.service_name}
        return {s.name for s in self.services.values() if s.node == check.node}

    # -- reads ---------------------------------------------------------------------------
    def instances(self, name: str) -> list[ServiceState]:
        found = [s for s in self.services.values() if s.name == name]
        return sorted(found, key=lambda s: (s.node, s.service_id))

    def checks_of(self, service: ServiceState) -> list[CheckState]:
        node_level = [
            c for c in self.checks.values() if c.node == service.node and not c.service_id
        ]
        own = [
            c
            for c in self.checks.values()
            if c.node == service.node and c.service_id == service.service_id
        ]
        return sorted(node_level, key=lambda c: c.check_id) + sorted(own, key=lambda c: c.check_id)

    def health_entry(self, service: ServiceState) -> dict[str, Any]:
        node = self.nodes[service.node]
        return {
            "Node": node_json(node, self.datacenter),
            "Service": service_node_json(service),
            "Checks": [check_json(c) for c in self.checks_of(service)],
        }


def tagged_addresses(service: ServiceState) -> dict[str, dict[str, Any]]:
    """The registered tagged addresses plus Consul's defaults for an IP service address."""
    found = {name: dict(value) for name, value in service.tagged_addresses.items()}
    try:
        version = ipaddress.ip_address(service.address).version
    except ValueError:
        return found
    suffix = "ipv4" if version == 4 else "ipv6"
    for name in (f"lan_{suffix}", f"wan_{suffix}"):
        found.setdefault(name, {"Address": service.address, "Port": service.port})
    return found


def node_json(node: NodeState, datacenter: str) -> dict[str, Any]:
    return {
        "ID": node.node_id,
        "Node": node.name,
        "Address": node.address,
        "Datacenter": datacenter,
        "TaggedAddresses": {
            "lan": node.address,
            "lan_ipv4": node.address,
            "wan": node.address,
            "wan_ipv4": node.address,
        },
        "Meta": dict(node.meta),
        "CreateIndex": node.create_index,
        "ModifyIndex": node.modify_index,
    }


def service_node_json(service: ServiceState) -> dict[str, Any]:
    body: dict[str, Any] = {
        "ID": service.service_id,
        "Service": service.name,
        "Tags": list(service.tags),
        "Address": service.address,
        "Meta": dict(service.meta),
        "Weights": dict(service.weights),
        "EnableTagOverride": False,
        "Proxy": {"Mode": "", "MeshGateway": {}, "Expose": {}},
        "Connect": {},
        "CreateIndex": service.create_index,
        "ModifyIndex": service.modify_index,
    }
    tagged = tagged_addresses(service)
    if tagged:
        body["TaggedAddresses"] = tagged
    if service.port:  # `json:",omitempty"` in Consul's NodeService
        body["Port"] = service.port
    return body


def agent_service_json(service: ServiceState, datacenter: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "ID": service.service_id,
        "Service": service.name,
        "Tags": list(service.tags),
        "Meta": dict(service.meta),
        "Port": service.port,
        "Address": service.address,
        "Weights": dict(service.weights),
        "EnableTagOverride": False,
        "Datacenter": datacenter,
    }
    tagged = tagged_addresses(service)
    if tagged:
        body["TaggedAddresses"] = tagged
    return body


def check_json(check: CheckState) -> dict[str, Any]:
    return {
        "Node": check.node,
        "CheckID": check.check_id,
        "Name": check.name,
        "Status": check.status,
        "Notes": check.notes,
        "Output": check.output,
        "ServiceID": check.service_id,
        "ServiceName": check.service_name,
        "ServiceTags": list(check.service_tags),
        "Type": check.type,
        "Interval": check.interval,
        "Timeout": check.timeout,
        "ExposedPort": 0,
        "Definition": {},
        "CreateIndex": check.create_index,
        "ModifyIndex": check.modify_index,
    }
