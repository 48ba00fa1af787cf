"""Consul discovery for Pilotfish: the public names, in one place.

* ``ConsulClientOptions`` - where the agent is and how to authenticate (``from_env`` reads
  Consul's ``CONSUL_HTTP_*`` variables);
* ``ConsulHealthWatcher`` - a Source following one service's healthy instances through
  blocking queries on ``/v1/health/service/<name>``;
* ``parse_health_service`` - the pure parser behind it;
* ``ConsulRegistration`` with ``HttpCheck``/``TtlCheck`` - keeps the local service registered
  with the local agent; ``default_service_id`` builds ``<name>-<hostname>-<port>``.

Implementation notes (python-consul2 and its limitations) are in ``consul_client``.
"""

from __future__ import annotations

from discovery.consul_client import ConsulClientOptions
from discovery.consul_parse import parse_health_service
from discovery.consul_register import (
    ConsulRegistration,
    HttpCheck,
    TtlCheck,
    default_service_id,
    registration_payload,
)
from discovery.consul_watch import ConsulHealthWatcher

__all__ = [
    "ConsulClientOptions",
    "ConsulHealthWatcher",
    "ConsulRegistration",
    "HttpCheck",
    "TtlCheck",
    "default_service_id",
    "parse_health_service",
    "registration_payload",
]
