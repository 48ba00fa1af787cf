"""What the benchmark compares: each target's command line, its address and how to tell it is up.

Invariants: every address is on 127.0.0.1; nginx and HAProxy configurations are rendered from
the templates in bench/configs/ into the run's work directory; Pilotfish's ports are read from
its own YAML file, so that file is the single place they are set; a target that cannot run
(missing binary, rejected configuration) carries the reason instead of failing the run.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

BENCH_DIR = Path(__file__).resolve().parent
CONFIG_DIR = BENCH_DIR / "configs"
BACKEND_LISTEN = "127.0.0.1:18081"
# Pilotfish's example configuration names the local service on 18080; the backend answers
# there too so that nothing in a Pilotfish configuration points at a closed port.
SERVICE_LISTEN = "127.0.0.1:18080"
SMALL_BODY_BYTES = 100
LARGE_BODY_BYTES = 16 * 1024
LARGE_CHUNK_BYTES = 2048
PILOTFISH_CONFIGS = {
    "pilotfish-realistic": "pilotfish-realistic.yaml",
    "pilotfish-off": "pilotfish-off.yaml",
}


@dataclass(frozen=True)
class Workspace:
    """Where one run keeps its files and which binaries it uses."""

    workdir: Path
    loadgen: Path
    goproxy: Path
    pilotfish: Path | None


@dataclass(frozen=True)
class Target:
    """One thing to send load to. ``argv`` is None for the backend itself (no proxy)."""

    key: str
    label: str
    listen: str
    argv: tuple[str, ...] | None
    env: Mapping[str, str] = field(default_factory=dict)
    ready_url: str | None = None
    unavailable: str | None = None

    def url(self, path: str) -> str:
        return f"http://{self.listen}{path}"


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill ``{{name}}`` placeholders; a placeholder left unfilled is an error."""
    text = template
    for name, value in values.items():
        text = text.replace("{{" + name + "}}", value)
    if "{{" in text:
        start = text.index("{{")
        raise ValueError(f"unfilled placeholder near {text[start : start + 40]!r}")
    return text


def _write_config(ws: Workspace, template: str, out_name: str, values: Mapping[str, str]) -> Path:
    out = ws.workdir / out_name
    source = (CONFIG_DIR / template).read_text()
    out.write_text(render(source, {"workdir": str(ws.workdir), **values}))
    return out


def prepare_workdir(ws: Workspace) -> None:
    for sub in ("tmp", "logs"):
        (ws.workdir / sub).mkdir(parents=True, exist_ok=True)
    # nginx workers drop privileges and must still be able to write their temp files.
    (ws.workdir / "tmp").chmod(0o777)


def backend(ws: Workspace) -> Target:
    """nginx answering 200 from memory with a 100 B (/small) or 16 KiB (/large) body."""
    repeats = LARGE_BODY_BYTES // LARGE_CHUNK_BYTES
    conf = _write_config(
        ws,
        "backend-nginx.conf",
        "backend.conf",
        {
            "backend_listen": BACKEND_LISTEN,
            "service_listen": SERVICE_LISTEN,
            "small_body": "s" * (SMALL_BODY_BYTES - 1) + "\\n",
            "large_chunk": "L" * LARGE_CHUNK_BYTES,
            "large_expression": "$chunk" * repeats,
        },
    )
    return Target("backend", "backend", BACKEND_LISTEN, _nginx_argv(ws, conf))


def _nginx_argv(ws: Workspace, conf: Path) -> tuple[str, ...]:
    return (
        "nginx",
        "-p",
        str(ws.workdir),
        "-e",
        str(ws.workdir / "logs" / "nginx-startup.log"),
        "-c",
        str(conf),
        "-g",
        "daemon off; master_process on;",
    )


def _pilotfish(ws: Workspace, key: str) -> Target:
    config = CONFIG_DIR / PILOTFISH_CONFIGS[key]
    data = yaml.safe_load(config.read_text())
    listen = data["upstreams"][0]["listen"]
    admin = data["listeners"]["admin"]
    ready_url = f"http://{admin['address']}:{admin['port']}/ready"
    label = "Pilotfish (policies on)" if key == "pilotfish-realistic" else "Pilotfish (all off)"
    if ws.pilotfish is None:
        return Target(key, label, listen, None, unavailable="pilotfish is not installed")
    check = subprocess.run(
        [str(ws.pilotfish), "check-config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if check.returncode != 0:
        reason = (check.stderr or check.stdout).strip().splitlines()[-1:] or ["rejected"]
        return Target(key, label, listen, None, unavailable=f"config rejected: {reason[0]}")
    argv = (str(ws.pilotfish), "run", "--config", str(config))
    return Target(key, label, listen, argv, ready_url=ready_url)


def all_targets(ws: Workspace) -> list[Target]:
    """Every target in table order: the baseline first, then the proxies."""
    upstream_url = f"http://{BACKEND_LISTEN}"
    nginx_conf = _write_config(
        ws,
        "nginx-proxy.conf",
        "nginx-proxy.conf",
        {"listen": "127.0.0.1:19201", "backend_listen": BACKEND_LISTEN},
    )
    haproxy_conf = _write_config(
        ws,
        "haproxy.cfg",
        "haproxy.cfg",
        {"listen": "127.0.0.1:19202", "backend_listen": BACKEND_LISTEN},
    )
    return [
        Target("direct", "direct (no proxy)", BACKEND_LISTEN, None),
        _pilotfish(ws, "pilotfish-realistic"),
        _pilotfish(ws, "pilotfish-off"),
        Target("nginx", "nginx", "127.0.0.1:19201", _nginx_argv(ws, nginx_conf)),
        Target(
            "haproxy", "HAProxy", "127.0.0.1:19202", ("haproxy", "-db", "-f", str(haproxy_conf))
        ),
        Target(
            "go",
            "Go httputil",
            "127.0.0.1:19203",
            (str(ws.goproxy), "-listen", "127.0.0.1:19203", "-upstream", upstream_url),
            env={"GOMAXPROCS": "1"},
        ),
        Target(
            "aiohttp",
            "naive aiohttp",
            "127.0.0.1:19204",
            (
                sys.executable,
                str(BENCH_DIR / "aiohttp_proxy.py"),
                "--port",
                "19204",
                "--upstream",
                upstream_url,
            ),
        ),
    ]
