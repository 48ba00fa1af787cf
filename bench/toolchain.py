"""Make sure the benchmark's tools exist: Debian packages and the two Go programs.

Invariants: packages are installed only when their binary is missing, with one
``apt-get update`` first and ``apt-get install -y`` after; while installing, services are kept
from starting (a temporary policy-rc.d, removed afterwards, only if the machine has none), so
no system nginx or HAProxy is left running; Go programs are single files built with the
Debian toolchain and the standard library alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

# binary -> Debian package that provides it
PACKAGES = {"nginx": "nginx", "haproxy": "haproxy", "wrk": "wrk", "go": "golang-go"}
POLICY_RC = Path("/usr/sbin/policy-rc.d")
INSTALL_TIMEOUT_S = 900


def missing_packages() -> list[str]:
    return [pkg for binary, pkg in PACKAGES.items() if shutil.which(binary) is None]


def ensure_packages() -> None:
    missing = missing_packages()
    if not missing:
        return
    print(f"installing Debian packages: {' '.join(missing)}", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    made_policy = False
    if not POLICY_RC.exists():
        POLICY_RC.write_text("#!/bin/sh\nexit 101\n")
        POLICY_RC.chmod(0o755)
        made_policy = True
    try:
        subprocess.run(["apt-get", "update"], env=env, check=True, timeout=INSTALL_TIMEOUT_S)
        subprocess.run(
            ["apt-get", "install", "-y", *missing],
            env=env,
            check=True,
            timeout=INSTALL_TIMEOUT_S,
        )
    finally:
        if made_policy:
            POLICY_RC.unlink(missing_ok=True)
    still = missing_packages()
    if still:
        raise RuntimeError(f"packages still missing after install: {still}")


def build_go(source: Path, output: Path) -> Path:
    """``go build`` one stand-alone .go file (no module, standard library only)."""
    env = {k: v for k, v in os.environ.items() if k != "GOFLAGS"}
    env.setdefault("HOME", str(output.parent))
    env.setdefault("GOCACHE", str(Path(env["HOME"]) / ".cache" / "go-build"))
    subprocess.run(
        ["go", "build", "-o", str(output), source.name],
        cwd=source.parent,
        env=env,
        check=True,
        timeout=300,
    )
    return output


def tool_versions() -> dict[str, str]:
    """One line per tool, for the results' machine section."""
    probes = {
        "nginx": ["nginx", "-v"],
        "haproxy": ["haproxy", "-v"],
        "wrk": ["wrk", "-v"],
        "go": ["go", "version"],
    }
    versions: dict[str, str] = {}
    for name, argv in probes.items():
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        except FileNotFoundError:
            versions[name] = "missing"
            continue
        lines = (done.stdout + done.stderr).strip().splitlines()
        first = lines[0] if lines else "unknown"
        versions[name] = first.split(" - http")[0].split(" Copyright")[0].strip()
    return versions
