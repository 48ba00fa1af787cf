"""The inbound listener's cluster: the local app, as one static endpoint.

Inbound traffic is not retried and not ejected: there is only one local app, and callers'
own sidecars already retry across replicas.
"""

from __future__ import annotations

from sidecar.config.policies import CircuitBreakersConfig, RetriesConfig
from sidecar.config.schema import (
    DiscoveryConfig,
    ServiceConfig,
    StaticEndpointConfig,
    UpstreamConfig,
)

LOCAL_CLUSTER = "local_app"


def local_upstream(service: ServiceConfig) -> UpstreamConfig:
    return UpstreamConfig(
        name=LOCAL_CLUSTER,
        discovery=DiscoveryConfig(
            static=(StaticEndpointConfig(address=service.address, port=service.port),)
        ),
        timeouts=service.timeouts,
        retries=RetriesConfig(attempts=0, per_try_timeout=0.0),
        circuit_breakers=CircuitBreakersConfig(endpoint=None),
        outlier_detection=None,
        panic_threshold=0,
    )
