"""docs/observability.md stays true to the code: every metric, log field and flag is in it."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

import sidecar
from sidecar.pipeline import layers  # noqa: F401  (defines a ProxyError subclass)
from sidecar.pipeline.errors import ProxyError
from sidecar.telemetry.access_log import FIELDS, FLAG_OF_ERROR
from tests.sidecar.harness import config_yaml, url

DOC = Path(__file__).resolve().parents[2] / "docs" / "observability.md"
_CODE = re.compile(r"`([^`\n]+)`")


def documented() -> set[str]:
    return set(_CODE.findall(DOC.read_text(encoding="utf-8")))


def subclasses(cls: type) -> list[type]:
    return [c for sub in cls.__subclasses__() for c in (sub, *subclasses(sub))]


async def test_every_metric_family_is_documented(backends, sidecar_factory, client):
    (backend,) = await backends(1)
    sc = await sidecar_factory(
        config_yaml(
            [
                {
                    "name": "api",
                    "discovery": {"static": [backend.address]},
                    "health_check": {"http": {"path": "/"}},
                }
            ],
            tracing={"enabled": True, "endpoint": "http://127.0.0.1:9/v1/traces"},
        )
    )
    async with client.get(url(sc, "admin", "/metrics")) as r:
        text = await r.text()
    names = set()
    for family in text_string_to_metric_families(text):
        if family.name.endswith("_created"):
            continue
        names.add(f"{family.name}_total" if family.type == "counter" else family.name)
    assert len(names) > 30
    assert names - documented() == set()


def test_every_access_log_field_and_response_flag_is_documented():
    doc = documented()
    assert set(FIELDS) - doc == set()
    flags = {c.flag for c in subclasses(ProxyError) if c.flag} | set(FLAG_OF_ERROR.values())
    source = Path(sidecar.__file__).parent
    for path in source.rglob("*.py"):
        flags |= set(re.findall(r'add_flag\("([A-Z]+)"\)', path.read_text(encoding="utf-8")))
    assert {"UH", "UF", "UT", "UO", "URX", "DC"} <= flags
    assert flags - doc == set()
