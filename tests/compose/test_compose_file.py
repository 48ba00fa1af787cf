"""The compose file itself: schema-valid, pinned images, start order, chaos profile."""

from __future__ import annotations

import ipaddress
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.compose.stack import (
    COMPOSE_DIR,
    COMPOSE_FILE,
    ROOT,
    compose,
    environment,
    fixed_address,
    mounts,
    published,
    services,
    sidecars,
    subnet,
)


def _check_schema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_compose_file_matches_the_compose_specification() -> None:
    result = _check_schema(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_compose_file(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  web:\n    image: nginx:1.27\n    ports: 8080\n")
    assert _check_schema(broken).returncode != 0


def test_every_image_is_pinned_to_a_version() -> None:
    for name, spec in services().items():
        image = spec.get("image")
        assert image, f"{name} names no image"
        repo, _, tag = image.rpartition(":")
        assert repo and "/" not in tag, f"{name}: {image!r} has no tag"
        assert tag != "latest", f"{name}: {image!r} is not pinned"


def test_the_pilotfish_image_is_tagged_with_the_project_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    built = {spec["image"] for spec in services().values() if "build" in spec}
    assert built == {f"pilotfish:{version}"}


def test_every_healthy_condition_waits_on_a_service_with_a_healthcheck() -> None:
    for name, spec in services().items():
        for dep, cond in (spec.get("depends_on") or {}).items():
            assert dep in services(), f"{name} depends on unknown {dep}"
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services()[dep], f"{name} waits on {dep}'s health"


@pytest.mark.parametrize("sidecar", sidecars(), ids=lambda s: s.name)
def test_sidecars_start_after_consul_and_their_app_are_healthy(sidecar) -> None:  # type: ignore[no-untyped-def]
    deps = services()[sidecar.name]["depends_on"]
    assert deps["consul"]["condition"] == "service_healthy"
    assert deps[sidecar.app]["condition"] == "service_healthy"
    assert "healthcheck" in services()[sidecar.name]
    assert "ports" not in services()[sidecar.name], "ports belong to the namespace owner"


def test_consul_runs_with_ui_dns_and_client_on_all_interfaces() -> None:
    consul = services()["consul"]
    command = consul["command"]
    assert command[command.index("-client") + 1] == "0.0.0.0"
    assert {"-dev", "-ui"} <= set(command)
    ports = {(c, proto) for _, c, proto in published("consul")}
    assert {(8500, "tcp"), (8600, "tcp"), (8600, "udp")} <= ports
    assert "consul" in consul["healthcheck"]["test"]


def test_jaeger_v2_publishes_its_ui_and_otlp_ports() -> None:
    assert re.fullmatch(r"jaegertracing/jaeger:2\.\d+\.\d+", services()["jaeger"]["image"])
    assert {16686, 4317, 4318} <= {c for _, c, _ in published("jaeger")}


def test_fixed_addresses_are_unique_inside_the_subnet_outside_the_dynamic_range() -> None:
    net, dynamic = subnet()
    assert dynamic.subnet_of(net)
    addresses = [a for a in map(fixed_address, services()) if a is not None]
    assert len(addresses) == len(set(addresses))
    for address in addresses:
        ip = ipaddress.IPv4Address(address)
        assert ip in net and ip not in dynamic, address


def test_host_ports_are_published_once() -> None:
    seen: dict[tuple[int, str], str] = {}
    for name in services():
        for host, _, proto in published(name):
            assert (host, proto) not in seen, f"{name} and {seen[(host, proto)]} publish {host}"
            seen[(host, proto)] = name


def test_chaos_profile_drives_payments_2_through_the_docker_socket() -> None:
    chaos = services()["chaos"]
    assert chaos["profiles"] == ["chaos"]
    volumes = mounts("chaos")
    assert volumes["/var/run/docker.sock"] == "/var/run/docker.sock"
    script = Path(volumes["/chaos.sh"])
    assert script.parent == COMPOSE_DIR and script.is_file()
    assert chaos["command"][-1] == "/chaos.sh"
    assert environment("chaos")["COMPOSE_PROJECT"] == compose()["name"]
    targets = set(re.findall(r"container ([a-z0-9-]+)\)", script.read_text()))
    assert targets == {"payments-2", "payments-2-sidecar"}
    assert targets <= set(services())


def test_services_outside_the_chaos_profile_never_depend_on_it() -> None:
    in_profiles = {n for n, s in services().items() if s.get("profiles")}
    for name, spec in services().items():
        if name not in in_profiles:
            assert not in_profiles & set(spec.get("depends_on") or {}), name
