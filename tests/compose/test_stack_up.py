"""End to end on a Docker engine: ``pytest -m compose tests/compose``.

Brings the stack up, waits for every healthcheck, sends requests through frontend's sidecar
and reads a sidecar's metrics, then takes the stack down.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator

import pytest

from tests.compose.stack import COMPOSE_FILE

COMPOSE = ["docker", "compose", "-f", str(COMPOSE_FILE)]


@pytest.fixture(scope="module")
def stack() -> Iterator[None]:
    subprocess.run([*COMPOSE, "up", "-d", "--build", "--wait"], check=True, timeout=600)
    try:
        yield
    finally:
        subprocess.run([*COMPOSE, "down", "-v"], check=False, timeout=120)


@pytest.mark.compose
def test_requests_cross_three_services_and_show_in_metrics(stack: None) -> None:
    instances = set()
    for _ in range(12):
        with urllib.request.urlopen("http://127.0.0.1:8080/checkout", timeout=10) as resp:
            body = json.load(resp)
        assert body["service"] == "frontend"
        assert body["upstream"]["service"] == "orders"
        instances.add(body["upstream"]["upstream"]["instance"])
    assert len(instances) >= 2  # balanced across payments replicas
    with urllib.request.urlopen("http://127.0.0.1:15902/metrics", timeout=10) as resp:
        assert "payments" in resp.read().decode()
