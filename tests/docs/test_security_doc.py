"""docs/security.md, tested: the warning it shows is the one logged, the nginx server block
passes /metrics, /ready and /live to a real sidecar and nothing else, and the NetworkPolicy is
valid Kubernetes that admits the deploy page's ports."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import kubernetes_validate
import pytest

from sidecar.admin_access import exposure_warning
from sidecar.app import Sidecar
from sidecar.config import load_text
from tests.docs.deploy_files import DEPLOY, KUBERNETES, SECURITY, block, by_kind, manifests
from tests.sidecar.conftest import sidecar_factory  # noqa: F401  (fixture)
from tests.sidecar.harness import config_yaml
from tests.system_tools import require

DOC_ADMIN = "127.0.0.1:15900"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_the_warning_shown_is_the_one_a_sidecar_on_every_address_logs(
    sidecar_factory,  # noqa: F811 (the fixture imported above)
):
    shown = block(SECURITY, "text", "WARNING")
    level, _, message = shown.strip().partition(" pilotfish.admin: ")
    assert level == "WARNING"
    sc: Sidecar = await sidecar_factory(
        config_yaml([{"name": "api", "discovery": {"static": ["127.0.0.1:1"]}}])
    )
    routes = sc.state.listeners["admin"].server.handler.routes  # type: ignore[attr-defined]
    assert message == exposure_warning("0.0.0.0", 15900, routes)


@contextlib.asynccontextmanager
async def nginx(server_block: str, folder: Path) -> AsyncIterator[None]:
    binary = require("nginx")
    conf = folder / "nginx.conf"
    conf.write_text(
        f"pid {folder}/nginx.pid;\nerror_log stderr;\nevents {{}}\nhttp {{\n"
        f"access_log off;\nclient_body_temp_path {folder};\nproxy_temp_path {folder};\n"
        f"{server_block}\n}}\n"
    )
    proc = await asyncio.create_subprocess_exec(
        binary, "-e", "stderr", "-p", str(folder), "-c", str(conf), "-g", "daemon off;",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        yield
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def get(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url) as r:
        await r.read()
        return r.status


async def test_the_nginx_block_passes_the_three_paths_and_nothing_else(
    sidecar_factory,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
):
    sc: Sidecar = await sidecar_factory(
        config_yaml([{"name": "api", "discovery": {"static": ["127.0.0.1:1"]}}])
    )
    host, admin = sc.address("admin")
    port = free_port()
    server = block(SECURITY, "nginx", "location")
    listen = re.search(r"listen (\S+);", server)
    assert listen is not None and DOC_ADMIN in server
    # the page's block, listening on a free loopback port and passing to this sidecar
    server = server.replace(listen.group(1), f"127.0.0.1:{port}")
    server = server.replace(DOC_ADMIN, f"{host}:{admin}")
    async with nginx(server, tmp_path), aiohttp.ClientSession() as session:
        base = f"http://127.0.0.1:{port}"
        async with asyncio.timeout(10):
            while True:  # polling another process until it listens
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    await get(session, f"{base}/live")
                    break
                await asyncio.sleep(0.05)
        passed = {path: await get(session, base + path) for path in ("/metrics", "/ready", "/live")}
        refused = {
            path: await get(session, base + path)
            for path in ("/config", "/clusters", "/stats", "/", "/metricsx", "/ready/../config")
        }
    assert passed == {"/metrics": 200, "/ready": 200, "/live": 200}
    assert set(refused.values()) == {404}, refused


def network_policy() -> dict:
    return by_kind(manifests(SECURITY), "NetworkPolicy")


def test_the_network_policy_is_valid_for_the_pinned_kubernetes_version():
    kubernetes_validate.validate(network_policy(), KUBERNETES, strict=True)


def test_the_network_policy_admits_the_inbound_port_to_all_and_the_admin_port_to_monitoring():
    policy = network_policy()["spec"]
    deployment = by_kind(manifests(DEPLOY), "Deployment")
    config = load_text(by_kind(manifests(DEPLOY), "ConfigMap")["data"]["pilotfish.yaml"], {})
    assert (
        policy["podSelector"]["matchLabels"] == deployment["spec"]["template"]["metadata"]["labels"]
    )
    assert policy["policyTypes"] == ["Ingress"]
    rules = {rule["ports"][0]["port"]: rule.get("from") for rule in policy["ingress"]}
    assert set(rules) == {config.listeners.inbound.port, config.listeners.admin.port}
    assert rules[config.listeners.inbound.port] is None  # from anywhere
    (source,) = rules[config.listeners.admin.port]
    assert source == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    }


@pytest.mark.parametrize("key", ["podSelector", "policyTypes"])
def test_the_validator_refuses_a_broken_policy(key: str):
    policy = network_policy()
    policy["spec"][key] = "everything"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(policy, KUBERNETES, strict=True)
