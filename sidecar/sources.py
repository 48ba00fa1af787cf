"""Builds the discovery source of an upstream from its config."""

from __future__ import annotations

import random

from discovery.model import Endpoint
from discovery.source import Source
from discovery.static import StaticSource
from sidecar.config.schema import Config, UpstreamConfig


def build_source(upstream: UpstreamConfig, config: Config, *, rng: random.Random) -> Source:
    disc = upstream.discovery
    if disc.static is not None:
        return StaticSource(upstream.name, [
            Endpoint(e.address, e.port, weight=e.weight, priority=e.priority) for e in disc.static
        ])
    raise NotImplementedError(f"discovery {disc.kind!r} is not wired yet")
