"""Builds the discovery source of an upstream from its config.

The pipeline never sees which kind of source feeds a cluster: every source publishes
``EndpointSet`` snapshots through its ``watch``.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from discovery.model import Endpoint
from discovery.source import Source
from discovery.static import StaticSource
from sidecar.config.schema import Config, ConsulConfig, UpstreamConfig

if TYPE_CHECKING:
    from discovery.consul import ConsulClientOptions


def consul_options(consul: ConsulConfig) -> ConsulClientOptions:
    from discovery.consul import ConsulClientOptions  # python-consul2 loads requests: ~0.1 s

    return ConsulClientOptions(
        address=consul.address,
        scheme=consul.scheme,
        token=consul.token,
        ca_file=consul.tls.ca_file,
        cert_file=consul.tls.cert_file,
        key_file=consul.tls.key_file,
        verify=consul.tls.verify,
    )


def build_source(upstream: UpstreamConfig, config: Config, *, rng: random.Random) -> Source:
    disc = upstream.discovery
    if disc.static is not None:
        return StaticSource(
            upstream.name,
            [
                Endpoint(e.address, e.port, weight=e.weight, priority=e.priority, name=e.name or "")
                for e in disc.static
            ],
        )
    if disc.consul is not None:
        from discovery.consul import ConsulHealthWatcher

        c = disc.consul
        return ConsulHealthWatcher(
            consul_options(config.consul),
            service=c.service,
            tags=c.tags,
            passing_only=c.passing_only,
            datacenter=c.datacenter or config.consul.datacenter,
            wait=c.wait,
            min_interval=c.min_interval,
            rng=rng,
        )
    assert disc.dns_srv is not None
    from discovery.dns_srv import DnsSrvSource

    d = disc.dns_srv
    return DnsSrvSource(
        name=d.name,
        nameservers=d.nameservers,
        refresh_min=d.refresh.min,
        refresh_max=d.refresh.max,
        timeout=d.timeout,
        rng=rng,
    )
