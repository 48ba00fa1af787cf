"""Registering the local service in the local Consul agent.

The service is registered at the sidecar's inbound listener (callers reach the app through
this sidecar) under ``<name>-<hostname>-<port>``, with an HTTP check against the inbound
listener or a TTL check the sidecar keeps passing while the app answers its health path.
"""

from __future__ import annotations

import socket

import aiohttp

from discovery.consul import ConsulRegistration, HttpCheck, TtlCheck, default_service_id
from sidecar.config.schema import Config
from sidecar.sources import consul_options


def advertised_address(config: Config, bound: str) -> str:
    if config.service.advertise_address:
        return config.service.advertise_address
    if bound in ("0.0.0.0", "::", ""):
        try:
            return socket.gethostbyname(socket.gethostname())
        except OSError:
            return ""  # Consul then uses the agent's node address
    return bound


def build_registration(config: Config, inbound: tuple[str, int]) -> ConsulRegistration:
    svc = config.service
    address = advertised_address(config, inbound[0])
    port = inbound[1]
    check: HttpCheck | TtlCheck | None = None
    if svc.check is not None and svc.check.http is not None:
        host = address or "127.0.0.1"
        check = HttpCheck(
            url=f"http://{host}:{port}{svc.check.http}",
            interval=svc.check.interval,
            timeout=svc.check.timeout,
            deregister_critical_after=svc.check.deregister_critical_after,
        )
    elif svc.check is not None and svc.check.ttl is not None:
        check = TtlCheck(
            ttl=svc.check.ttl, deregister_critical_after=svc.check.deregister_critical_after
        )
    health_url = f"http://{svc.address}:{svc.port}{svc.health_path}"
    timeout = aiohttp.ClientTimeout(total=svc.check.timeout if svc.check else 1.0)

    async def app_health() -> bool:
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(health_url) as resp,
            ):
                return resp.status < 400
        except (aiohttp.ClientError, TimeoutError):
            return False

    return ConsulRegistration(
        consul_options(config.consul),
        service_id=svc.id or default_service_id(svc.name, socket.gethostname(), port),
        name=svc.name,
        address=address,
        port=port,
        tags=svc.tags,
        meta=svc.meta,
        check=check,
        app_health=app_health,
    )
