from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sidecar.app import Sidecar
from tests.observability.otlp_receiver import OtlpReceiver
from tests.sidecar.conftest import backends, client, sidecar_factory
from tests.sidecar.harness import url

__all__ = ["backends", "client", "closed_port", "otlp", "scrape", "sidecar_factory"]


@pytest.fixture
async def otlp() -> AsyncIterator[OtlpReceiver]:
    receiver = await OtlpReceiver().start()
    yield receiver
    await receiver.stop()


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Scrape(dict[tuple[str, frozenset[tuple[str, str]]], float]):
    """Samples of one ``/metrics`` answer, looked up by name and labels."""

    def get_value(self, name: str, **labels: str) -> float | None:
        return self.get((name, frozenset(labels.items())))

    def value(self, name: str, **labels: str) -> float:
        found = self.get_value(name, **labels)
        return 0.0 if found is None else found

    def names(self) -> set[str]:
        return {name for name, _ in self}


async def scrape(session: aiohttp.ClientSession, sidecar: Sidecar) -> Scrape:
    async with session.get(url(sidecar, "admin", "/metrics")) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text = await r.text()
    out = Scrape()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out
