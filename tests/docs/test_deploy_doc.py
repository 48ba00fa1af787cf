"""docs/deploy.md, tested: the systemd unit passes ``systemd-analyze verify`` and its start,
readiness and stop commands work on a real process; the Kubernetes manifests pass
``kubernetes-validate`` (offline, pinned version) and their probes, hooks and grace period
fit the sidecar's config."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import kubernetes_validate
import pytest
import yaml

from sidecar.config import load_text
from sidecar.config.units import parse_duration
from tests.discovery.consul_double import ConsulDouble, Fault, consul_double  # noqa: F401
from tests.docs.deploy_files import DEPLOY, KUBERNETES, by_kind, manifests, systemd_unit
from tests.docs.doc_commands import ROOT, blocks, read
from tests.system_tools import require

DEREGISTERING = 5.0  # the sidecar's bound on maintenance + deregistration at stop
PILOTFISH = Path(sys.executable).parent / "pilotfish"  # where this checkout's venv has it
DOC_BINARY = "/opt/pilotfish/bin/pilotfish"
DOC_CONFIG = "/etc/pilotfish/pilotfish.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- systemd ---------------------------------------------------------------------------------


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path):
    analyze = require("systemd-analyze")
    require("curl")  # ExecStartPost's program must exist for verify
    unit = tmp_path / "pilotfish.service"
    # verify wants ExecStart's program to exist: the documented path becomes this checkout's
    unit.write_text(systemd_unit().text.replace(DOC_BINARY, str(PILOTFISH)))
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    # verify exits 0 even for a line it ignores: anything it prints is a finding
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_the_unit_stops_with_sigterm_after_the_drain_and_reloads_with_sighup():
    unit = systemd_unit()
    config = load_text(example("consul"), environ={})
    assert unit.one("KillSignal") == "SIGTERM"
    assert parse_duration(unit.one("TimeoutStopSec")) > config.drain_timeout + DEREGISTERING
    assert unit.one("ExecReload") == "/bin/kill -HUP $MAINPID"
    assert unit.one("ExecStart") == f"{DOC_BINARY} run --config {DOC_CONFIG}"
    post = shlex.split(unit.one("ExecStartPost"))
    admin = config.listeners.admin
    assert post[-1] == f"http://{admin.address}:{admin.port}/ready"
    retry_for = float(post[post.index("--retry-max-time") + 1])
    assert retry_for + config.discovery_timeout < parse_duration(unit.one("TimeoutStartSec"))


def example(kind: str) -> str:
    done = subprocess.run(
        [str(PILOTFISH), "example", kind], capture_output=True, text=True, timeout=30, check=True
    )
    return done.stdout


async def admin_status(session: aiohttp.ClientSession, port: int) -> int:
    try:
        async with session.get(f"http://127.0.0.1:{port}/ready") as r:
            return r.status
    except aiohttp.ClientConnectionError:
        return 0


async def test_the_units_commands_start_wait_for_ready_and_stop_a_real_sidecar(
    consul_double: ConsulDouble,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
):
    require("curl")
    unit = systemd_unit()
    # The reader's files: `pilotfish example consul` as the config, on ports free here.
    admin, inbound = free_port(), free_port()
    config: dict[str, Any] = yaml.safe_load(example("consul"))
    config["listeners"]["admin"]["port"] = admin
    config["listeners"]["inbound"]["port"] = inbound
    config["upstreams"][0]["listen"] = f"127.0.0.1:{free_port()}"
    (tmp_path / "etc" / "pilotfish").mkdir(parents=True)
    config_path = tmp_path / "etc" / "pilotfish" / "pilotfish.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSUL_", "OTEL_"))}
    for assignment in unit.service["Environment"]:
        name, _, value = assignment.partition("=")
        env[name] = consul_double.address if name == "CONSUL_HTTP_ADDR" else value
    start = shlex.split(unit.one("ExecStart").replace(DOC_BINARY, str(PILOTFISH)))
    start[start.index(DOC_CONFIG)] = str(config_path)
    post = shlex.split(unit.one("ExecStartPost").replace(":15900/", f":{admin}/"))

    consul_double.inject(Fault.HANG)  # payments' endpoints do not come: not ready
    main = await asyncio.create_subprocess_exec(
        *start, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    waiting = await asyncio.create_subprocess_exec(
        *post, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        async with aiohttp.ClientSession() as session:
            async with asyncio.timeout(20):  # listening once discovery_timeout (5 s) ran out
                while await admin_status(session, admin) != 503:
                    await asyncio.sleep(0.1)  # polling another process
            assert waiting.returncode is None  # still waiting: 503 is not ready
            consul_double.add_instance("payments", "payments-1", port=9, address="127.0.0.1")
            consul_double.clear_faults()
            assert await asyncio.wait_for(waiting.wait(), 20) == 0
            assert await admin_status(session, admin) == 200
        assert consul_double.requests_to("/v1/agent/service/register")
        main.send_signal(getattr(signal, unit.one("KillSignal")))
        stop_within = parse_duration(unit.one("TimeoutStopSec"))
        _, err = await asyncio.wait_for(main.communicate(), stop_within)
        assert main.returncode == 0, err.decode()[-2000:]
        assert consul_double.requests_to("/v1/agent/service/deregister/")
    finally:
        for proc in (main, waiting):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


# -- Kubernetes ------------------------------------------------------------------------------


def test_the_manifests_are_valid_for_the_pinned_kubernetes_version():
    docs = manifests(DEPLOY)
    assert [d["kind"] for d in docs] == ["ConfigMap", "Deployment", "Service"]
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_the_validator_refuses_what_kubernetes_would():
    deployment = by_kind(manifests(DEPLOY), "Deployment")
    sidecar = deployment["spec"]["template"]["spec"]["initContainers"][0]
    sidecar["restartPolicyy"] = sidecar.pop("restartPolicy")  # a typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)


def test_the_pages_validate_command_runs_offline(tmp_path: Path):
    (command,) = [c for c in re.findall(r"^\.venv/bin/kubernetes-validate .*$", read(DEPLOY), re.M)]
    words = shlex.split(command)
    manifest = next(b.text for b in blocks(read(DEPLOY)) if "kind: Deployment" in b.text)
    (tmp_path / words[-1]).write_text(manifest)
    tool = Path(sys.executable).parent / "kubernetes-validate"
    env = {**os.environ, "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    done = subprocess.run(
        [str(tool), *words[1:]], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(" passed for resource ") == 3, done.stdout


def pod_spec() -> dict[str, Any]:
    return by_kind(manifests(DEPLOY), "Deployment")["spec"]["template"]["spec"]


def sidecar_container() -> dict[str, Any]:
    (container,) = pod_spec()["initContainers"]
    return container


def test_pilotfish_is_a_native_sidecar_probed_on_ready_and_live():
    pod, sidecar = pod_spec(), sidecar_container()
    config = load_text(by_kind(manifests(DEPLOY), "ConfigMap")["data"]["pilotfish.yaml"], {})
    admin = config.listeners.admin
    assert sidecar["restartPolicy"] == "Always"
    ports = {p["name"]: p["containerPort"] for p in sidecar["ports"]}
    assert ports == {"inbound": config.listeners.inbound.port, "admin": admin.port}
    assert admin.address == "0.0.0.0"  # the kubelet probes from the node
    probes = {kind: sidecar[kind]["httpGet"] for kind in ("startupProbe", "readinessProbe",
                                                           "livenessProbe")}  # fmt: skip
    assert {k: (g["path"], g["port"]) for k, g in probes.items()} == {
        "startupProbe": ("/ready", admin.port),
        "readinessProbe": ("/ready", admin.port),
        "livenessProbe": ("/live", admin.port),
    }
    (app,) = pod["containers"]
    upstream = config.upstreams[0]
    assert {"name": "PAYMENTS_URL", "value": f"http://{upstream.listen}"} in app["env"]
    service = by_kind(manifests(DEPLOY), "Service")
    assert service["spec"]["ports"][0]["targetPort"] == config.listeners.inbound.port


def test_the_grace_period_covers_the_prestop_pause_and_the_drain():
    pod, sidecar = pod_spec(), sidecar_container()
    config = load_text(by_kind(manifests(DEPLOY), "ConfigMap")["data"]["pilotfish.yaml"], {})
    pause = sidecar["lifecycle"]["preStop"]["sleep"]["seconds"]
    (app,) = pod["containers"]
    assert app["lifecycle"]["preStop"]["sleep"]["seconds"] == pause
    # the sidecar's SIGTERM comes after the app has exited: leave the app 5 s of its own
    needed = pause + 5 + config.drain_timeout + DEREGISTERING
    assert pod["terminationGracePeriodSeconds"] >= needed
    # the startup probe waits out a first discovery at least as long as the sidecar does
    startup = sidecar["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] > config.discovery_timeout


def test_the_config_is_mounted_where_the_image_reads_it():
    sidecar = sidecar_container()
    dockerfile = (ROOT / "compose" / "Dockerfile").read_text()
    cmd = re.search(r'^CMD \["pilotfish", "run", "--config", "([^"]+)"\]$', dockerfile, re.M)
    assert cmd is not None
    (mount,) = sidecar["volumeMounts"]
    assert str(Path(mount["mountPath"]) / "pilotfish.yaml") == cmd.group(1)
    assert "args" not in sidecar and "command" not in sidecar  # the image's CMD runs
    version = re.search(r'^version = "([^"]+)"$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version is not None and sidecar["image"] == f"pilotfish:{version.group(1)}"
