"""Each sidecar's Pilotfish config is valid under the environment compose gives it, and
every name, address and port it mentions agrees with the compose file."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys

import pytest

from sidecar.config import load_file
from sidecar.config.schema import Config
from tests.compose.stack import (
    COMPOSE_DIR,
    ROOT,
    Sidecar,
    environment,
    fixed_address,
    published,
    services,
    sidecars,
    url_host_port,
)

SIDECARS = sidecars()


def _config(sidecar: Sidecar) -> Config:
    return load_file(sidecar.config, environ=sidecar.env)


def _healthcheck_url(service: str) -> str:
    command = services()[service]["healthcheck"]["test"]
    url = command[-1].split("urlopen('")[1].split("'")[0]
    return url


def test_every_config_under_compose_is_mounted_into_exactly_one_sidecar() -> None:
    files = sorted(COMPOSE_DIR.rglob("*.yaml"))
    mounted = sorted(s.config for s in SIDECARS)
    assert files == mounted


@pytest.mark.parametrize("sidecar", SIDECARS, ids=lambda s: s.name)
def test_check_config_accepts_it_with_the_compose_environment(sidecar: Sidecar) -> None:
    env = {**os.environ, **sidecar.env}
    result = subprocess.run(
        [sys.executable, "-m", "sidecar", "check-config", str(sidecar.config)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_the_configs_need_the_compose_environment() -> None:
    # Guards the test above: without compose's variables the configs do not load.
    bare = {k: v for k, v in os.environ.items() if k not in ("ADVERTISE_ADDRESS", "NAMESERVER")}
    sidecar = SIDECARS[0]
    result = subprocess.run(
        [sys.executable, "-m", "sidecar", "check-config", str(sidecar.config)],
        capture_output=True, text=True, env=bare, cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "ADVERTISE_ADDRESS is not set" in result.stderr


@pytest.mark.parametrize("sidecar", SIDECARS, ids=lambda s: s.name)
def test_sidecar_fronts_its_app_and_registers_its_address(sidecar: Sidecar) -> None:
    config = _config(sidecar)
    app_env = environment(sidecar.app)
    assert config.service.address == "127.0.0.1"
    assert config.service.port == int(app_env["APP_PORT"])
    assert url_host_port(_healthcheck_url(sidecar.app)) == ("127.0.0.1", config.service.port)
    assert config.service.name == app_env["SERVICE_NAME"]
    assert config.service.register
    assert config.service.check is not None and config.service.check.http == "/health"
    assert config.service.advertise_address == fixed_address(sidecar.app)
    assert config.listeners.inbound is not None
    assert config.listeners.inbound.address == "0.0.0.0"


@pytest.mark.parametrize("sidecar", SIDECARS, ids=lambda s: s.name)
def test_admin_listener_is_published_and_probed(sidecar: Sidecar) -> None:
    admin = _config(sidecar).listeners.admin
    assert admin.address == "0.0.0.0"
    assert admin.port in {container for _, container, _ in published(sidecar.app)}
    assert url_host_port(_healthcheck_url(sidecar.name)) == ("127.0.0.1", admin.port)
    assert _healthcheck_url(sidecar.name).endswith("/ready")


def test_admin_host_ports_are_distinct_per_sidecar() -> None:
    hosts = []
    for sidecar in SIDECARS:
        admin = _config(sidecar).listeners.admin.port
        hosts += [h for h, c, _ in published(sidecar.app) if c == admin]
    assert len(hosts) == len(SIDECARS) == len(set(hosts))


@pytest.mark.parametrize("sidecar", SIDECARS, ids=lambda s: s.name)
def test_consul_and_tracing_point_at_compose_services(sidecar: Sidecar) -> None:
    config = _config(sidecar)
    consul_host, consul_port = config.consul.address.split(":")
    assert consul_host in services()
    assert int(consul_port) in {c for _, c, _ in published(consul_host)}
    assert config.tracing.endpoint is not None
    host, port = url_host_port(config.tracing.endpoint)
    assert host in services()
    assert port in {c for _, c, _ in published(host)}
    assert config.tracing.endpoint.endswith("/v1/traces")


def test_apps_call_their_upstreams_through_their_own_sidecar() -> None:
    callers = 0
    for sidecar in SIDECARS:
        url = environment(sidecar.app).get("UPSTREAM_URL")
        listens = {str(u.listen) for u in _config(sidecar).upstreams}
        if url is None:
            assert not listens, f"{sidecar.app} calls nothing, yet its sidecar listens"
            continue
        callers += 1
        host, port = url_host_port(url)
        assert f"{host}:{port}" in listens
    assert callers == 2  # frontend -> orders -> payments


def test_upstreams_name_services_some_sidecar_registers() -> None:
    registered = {_config(s).service.name for s in SIDECARS}
    kinds = set()
    for sidecar in SIDECARS:
        for upstream in _config(sidecar).upstreams:
            discovery = upstream.discovery
            kinds.add(discovery.kind)
            if discovery.consul is not None:
                assert discovery.consul.service == upstream.name
            elif discovery.dns_srv is not None:
                assert discovery.dns_srv.name == f"_{upstream.name}._tcp.service.consul"
            assert upstream.name in registered
    assert kinds == {"consul", "dns_srv"}


def test_dns_srv_asks_consul_at_its_fixed_address() -> None:
    consul_ip = fixed_address("consul")
    dns_ports = {c for _, c, proto in published("consul") if proto == "udp"}
    found = 0
    for sidecar in SIDECARS:
        for upstream in _config(sidecar).upstreams:
            if upstream.discovery.dns_srv is None:
                continue
            for server in upstream.discovery.dns_srv.nameservers:
                host, _, port = server.rpartition(":")
                ipaddress.IPv4Address(host)  # c-ares needs an address, not a name
                assert (host, int(port)) == (consul_ip, 8600)
                assert int(port) in dns_ports
                found += 1
    assert found


def test_loadgen_calls_frontend_through_its_sidecar_inbound_listener() -> None:
    host, port = url_host_port(environment("loadgen")["TARGET_URL"])
    (sidecar,) = [s for s in SIDECARS if s.app == host]
    inbound = _config(sidecar).listeners.inbound
    assert inbound is not None and inbound.port == port
