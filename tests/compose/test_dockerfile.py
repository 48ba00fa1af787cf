"""The image: installs the project as the Makefile does, copies what the package needs,
runs as a non-root user, and starts the sidecar on the config compose mounts."""

from __future__ import annotations

import re
import shlex
import tomllib

from tests.compose.stack import COMPOSE_DIR, CONFIG_TARGET, ROOT, services

DOCKERFILE = COMPOSE_DIR / "Dockerfile"
# pip install [flags] <target>, the target being the project root with optional extras.
PIP_INSTALL = re.compile(r"pip install\s+(?:-\S+\s+)*['\"]?(\.)(?:\[[\w,]+\])?['\"]?(?:\s|$)")


def _instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def _args(keyword: str) -> list[str]:
    return [args for kw, args in _instructions() if kw == keyword]


def test_dockerfile_installs_the_project_root_like_the_makefile() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "make demo" in (ROOT / "README.md").read_text()  # the README defers to make
    make_installs = [m.group(1) for m in PIP_INSTALL.finditer(makefile)]
    docker_installs = [m.group(1) for run in _args("RUN") for m in PIP_INSTALL.finditer(run)]
    assert make_installs and set(make_installs) == {"."}
    assert docker_installs == ["."]


def test_the_install_pattern_tells_project_installs_from_others() -> None:
    assert PIP_INSTALL.search("pip install -q -e '.[dev]'")
    assert PIP_INSTALL.search("pip install .")
    assert not PIP_INSTALL.search("pip install pilotfish")
    assert not PIP_INSTALL.search("pip install ./vendor/thing")


def test_base_image_is_python_3_11_slim() -> None:
    assert _args("FROM") == ["python:3.11-slim"]


def test_every_file_the_build_needs_is_copied() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    copied = {src for args in _args("COPY") for src in shlex.split(args)[:-1]}
    licenses = project["project"]["license-files"]
    assert {"pyproject.toml", project["project"]["readme"], *licenses, *packages} <= copied
    for src in copied:
        assert (ROOT / src).exists(), src


def test_dockerignore_lets_every_copied_path_through() -> None:
    ignore = (COMPOSE_DIR / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {ln[1:].rstrip("/") for ln in ignore if ln.startswith("!")}
    copied = {src for args in _args("COPY") for src in shlex.split(args)[:-1]}
    assert copied == allowed


def test_runs_as_a_non_root_user() -> None:
    (user,) = _args("USER")
    assert user not in ("root", "0")


def test_default_command_runs_the_sidecar_on_the_mounted_config() -> None:
    (cmd,) = _args("CMD")
    assert shlex.split(cmd.strip("[]").replace(",", " ")) == [
        "pilotfish", "run", "--config", CONFIG_TARGET,
    ]  # fmt: skip


def test_demo_commands_run_scripts_the_image_contains() -> None:
    in_image = {}
    for args in _args("COPY"):
        *sources, dest = shlex.split(args)
        for src in sources:
            in_image[dest.rstrip("/") + "/" + src.rsplit("/", 1)[-1]] = src
    scripts = [
        spec["command"][1] for spec in services().values()
        if "build" in spec and spec.get("command", [None])[0] == "python"
    ]  # fmt: skip
    assert scripts
    for script in scripts:
        assert script in in_image, script
