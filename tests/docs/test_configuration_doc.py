"""docs/configuration.md stays true to the config schema.

Every key a config file may hold (each field of every dataclass reachable from
``sidecar.config.schema.Config``) must be documented as `` `key` `` in a table row or a
heading, and the complete example at the top of the page must load.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sidecar.config import load_text
from sidecar.config.build import field
from sidecar.config.schema import Config

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
_CODE = re.compile(r"`([^`\n]+)`")
_FIRST_YAML = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)


def is_section(cls: Any) -> bool:
    """A dataclass whose fields are YAML keys (declared with ``sidecar.config.build.field``).

    Values parsed from a string into a dataclass (``HostPort``, ``HashOn``) are not sections:
    their fields are not keys anyone writes.
    """
    return dataclasses.is_dataclass(cls) and all(
        "parse" in f.metadata for f in dataclasses.fields(cls)
    )


def dataclasses_in(hint: Any) -> list[type]:
    """Dataclasses named by a type hint, looking inside Annotated, Optional, tuple and dict."""
    if dataclasses.is_dataclass(hint):
        return [hint]
    return [cls for arg in typing.get_args(hint) for cls in dataclasses_in(arg)]


def sections(root: type) -> list[type]:
    """Every section reachable from ``root``, ``root`` first, each once."""
    found: list[type] = []
    pending = [root]
    while pending:
        cls = pending.pop(0)
        if cls in found or not is_section(cls):
            continue
        found.append(cls)
        hints = typing.get_type_hints(cls, include_extras=True)
        for f in dataclasses.fields(cls):
            pending.extend(dataclasses_in(hints[f.name]))
    return found


def keys_of(cls: type) -> list[str]:
    return [f.metadata.get("key") or f.name for f in dataclasses.fields(cls) if f.init]


def documented_names(text: str) -> set[str]:
    """Backticked names in the first cell of table rows, and in headings (where
    ``upstreams[].retries`` documents ``retries``)."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("|"):
            names.update(_CODE.findall(line.split("|")[1]))
        elif line.startswith("#"):
            for code in _CODE.findall(line):
                names.update(re.split(r"\[\]\.|\.", code))
    return names


def undocumented(root: type, text: str) -> list[str]:
    names = documented_names(text)
    return [
        f"{cls.__name__}.{key}"
        for cls in sections(root)
        for key in keys_of(cls)
        if key not in names
    ]


def first_yaml_block(text: str) -> str:
    match = _FIRST_YAML.search(text)
    assert match is not None, "docs/configuration.md has no ```yaml block"
    return match.group(1)


def test_the_walk_reaches_sections_behind_optional_tuple_and_parse():
    names = {cls.__name__ for cls in sections(Config)}
    expected = {
        "Config",
        "ServiceConfig",
        "ServiceCheckConfig",
        "ListenersConfig",
        "ListenerConfig",
        "UpstreamConfig",
        "DiscoveryConfig",
        "StaticEndpointConfig",
        "ConsulDiscoveryConfig",
        "DnsSrvDiscoveryConfig",
        "DnsRefreshConfig",
        "HeaderRules",
        "RewriteConfig",
        "BalancerConfig",
        "RingConfig",
        "TimeoutsConfig",
        "RetriesConfig",
        "BackoffConfig",
        "RetryBudgetConfig",
        "CircuitBreakersConfig",
        "EndpointBreakerConfig",
        "OutlierDetectionConfig",
        "HealthCheckConfig",
        "HttpProbeConfig",
        "TcpProbeConfig",
        "ConsulConfig",
        "ConsulTlsConfig",
        "TracingConfig",
        "AccessLogConfig",
    }
    assert expected <= names
    assert "HostPort" not in names and "HashOn" not in names


def test_every_config_key_is_documented():
    assert undocumented(Config, DOC.read_text(encoding="utf-8")) == []


@dataclass(frozen=True, slots=True, kw_only=True)
class _Probe:
    nested_only_key_for_this_test: int = field(0)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Root:
    listed: tuple[_Probe, ...] | None = field(None)
    spelled: int = field(0, key="spelled-in-yaml")


def test_a_key_missing_from_the_page_is_reported():
    text = "| `listed` | list | `spelled` | | |\n| spelled | integer | | | |\n"
    assert undocumented(_Root, text) == [
        "_Root.spelled-in-yaml",
        "_Probe.nested_only_key_for_this_test",
    ]
    prose_only = text + "The key `nested_only_key_for_this_test` in prose does not count.\n"
    assert "_Probe.nested_only_key_for_this_test" in undocumented(_Root, prose_only)


def test_the_complete_example_loads():
    example = first_yaml_block(DOC.read_text(encoding="utf-8"))
    config = load_text(example, environ={})
    written = set(re.findall(r"^(\w+):", example, re.MULTILINE))
    assert written == set(keys_of(Config)), "the complete example should show every section"
    assert {up.discovery.kind for up in config.upstreams} == {"static", "consul", "dns_srv"}
