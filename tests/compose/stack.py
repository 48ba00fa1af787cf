"""Read the compose stack as data: services, their environment, and each sidecar's config.

A sidecar is a service sharing another service's network namespace
(``network_mode: service:<app>``); its Pilotfish config is the file mounted at
``/etc/pilotfish/pilotfish.yaml``. Everything here is parsing only: no Docker needed.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
CONFIG_TARGET = "/etc/pilotfish/pilotfish.yaml"


@dataclass(frozen=True)
class Sidecar:
    name: str  # the sidecar's compose service
    app: str  # the service whose network namespace it shares
    config: Path  # the Pilotfish config mounted into it
    env: dict[str, str]


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def environment(service: str) -> dict[str, str]:
    raw = services()[service].get("environment") or {}
    if isinstance(raw, list):
        pairs = (item.partition("=") for item in raw)
        return {k: v for k, _, v in pairs}
    return {k: "" if v is None else str(v) for k, v in raw.items()}


def mounts(service: str) -> dict[str, str]:
    """Container path -> host path (resolved against the compose file's folder)."""
    out: dict[str, str] = {}
    for volume in services()[service].get("volumes") or []:
        source, target = str(volume).split(":")[:2]
        out[target] = str((COMPOSE_DIR / source).resolve()) if source.startswith(".") else source
    return out


def sidecars() -> list[Sidecar]:
    out = []
    for name, spec in services().items():
        mode = str(spec.get("network_mode", ""))
        if not mode.startswith("service:"):
            continue
        config = Path(mounts(name)[CONFIG_TARGET])
        out.append(Sidecar(name, mode.removeprefix("service:"), config, environment(name)))
    return out


def published(service: str) -> list[tuple[int, int, str]]:
    """(host port, container port, protocol) for each ``ports`` entry in short syntax."""
    out = []
    for entry in services()[service].get("ports") or []:
        ports, _, proto = str(entry).partition("/")
        host, _, container = ports.rpartition(":")
        out.append((int(host), int(container), proto or "tcp"))
    return out


def fixed_address(service: str) -> str | None:
    networks = services()[service].get("networks") or {}
    if isinstance(networks, dict):
        for spec in networks.values():
            if spec and spec.get("ipv4_address"):
                return str(spec["ipv4_address"])
    return None


def subnet() -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Network]:
    """The default network's subnet and the range Docker hands out dynamically."""
    config = compose()["networks"]["default"]["ipam"]["config"][0]
    return ipaddress.IPv4Network(config["subnet"]), ipaddress.IPv4Network(config["ip_range"])


def url_host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname and parts.port, f"{url!r} needs an explicit host and port"
    return parts.hostname, parts.port
