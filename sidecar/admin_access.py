"""Who may use the admin listener.

Routes that change state (``POST /reload`` and any to come) answer only peers on the
loopback interface, wherever the listener is bound: wrap them in ``loopback_only``. A peer
is loopback when its address is in 127.0.0.0/8 or is ::1, also written IPv4-mapped
(``::ffff:127.0.0.1``, what a dual-stack socket bound to ``::`` reports for an IPv4 peer).
Anything else, an empty or unparsable address included, is not.

Binding the admin listener to an address other hosts can reach is allowed (Kubernetes
probes and Prometheus need it) but logged once, naming the routes it exposes, so nobody
exposes ``/config`` and ``/clusters`` without knowing (docs/security.md says what to expose
and how). Invariants: pure functions except the one warning; nothing here runs per request
but the address check of a wrapped route.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable

from sidecar.admin_reply import AdminReply, AdminRoute, text_reply
from sidecar.listener.request import DownstreamRequest

log = logging.getLogger("pilotfish.admin")

FORBIDDEN = text_reply("403: Forbidden: only a loopback peer may do this\n", 403)

# What each route gives away, in the words of the warning.
EXPOSES = {
    "/": "the live page",
    "/clusters": "endpoint addresses and state",
    "/config": "the effective config, secrets redacted",
    "/events": "recent state changes: ejections, breakers, reloads",
    "/history": "the last minutes of rates, errors and latencies per endpoint",
    "/reload": "config reload, for loopback peers only",
    "/metrics": "Prometheus metrics",
    "/stats": "request totals",
    "/ready": "readiness",
    "/live": "liveness",
}


def is_loopback(address: str) -> bool:
    """True for a peer address on the loopback interface (IPv4, IPv6 or IPv4-mapped IPv6)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def loopback_only(route: AdminRoute) -> AdminRoute:
    """``route`` for loopback peers; 403 for any other."""

    async def guarded(request: DownstreamRequest) -> AdminReply:
        if not is_loopback(request.client_ip):
            return FORBIDDEN
        return await route(request)

    return guarded


def exposure_warning(bound: str, port: int, paths: Iterable[str]) -> str | None:
    """The warning for an admin listener bound to ``bound``; None when it is loopback."""
    if is_loopback(bound):
        return None
    served = ", ".join(
        f"{path} ({EXPOSES[path]})" if path in EXPOSES else path for path in sorted(paths)
    )
    return (
        f"admin listener on {bound}:{port} is reachable from other hosts; it serves {served}. "
        "Expose only /metrics, /ready and /live (see docs/security.md); routes that change "
        "state answer loopback peers only"
    )


def warn_if_exposed(bound: str, port: int, paths: Iterable[str]) -> None:
    message = exposure_warning(bound, port, paths)
    if message is not None:
        log.warning("%s", message)
