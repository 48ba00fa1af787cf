"""Packaging: the wheel carries the license, the example configs and no build warning;
``pilotfish example`` prints configs that pass ``check-config``; ``make clean`` leaves the tree
as cloned."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from sidecar.cli import EXAMPLES
from tests.system_tools import require

ROOT = Path(__file__).resolve().parents[2]


def tree_copy(to: Path) -> set[str]:
    """The files a fresh clone has (tracked, plus new ones not ignored), copied to ``to``."""
    listed = subprocess.run(
        [require("git"), "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, check=True, timeout=30,
    ).stdout.decode().split("\0")  # fmt: skip
    files = {name for name in listed if name and (ROOT / name).is_file()}
    for name in files:
        (to / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, to / name)
    return files


def build_wheel(tree: Path, out: Path) -> tuple[Path, str]:
    """The wheel built from ``tree`` by setuptools, and what the build printed."""
    build = f"from setuptools import build_meta; build_meta.build_wheel({str(out)!r})"
    done = subprocess.run(
        [sys.executable, "-c", build],
        cwd=tree, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = out.glob("pilotfish-*.whl")
    return wheel, done.stdout + done.stderr


def test_the_license_is_apache_2_and_pyproject_says_so_in_spdx():
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]


def test_the_wheel_carries_license_and_examples_and_builds_without_warnings(tmp_path: Path):
    tree_copy(tmp_path / "tree")
    wheel, output = build_wheel(tmp_path / "tree", tmp_path / "dist")
    warnings = [line for line in output.splitlines() if "warning" in line.lower()]
    # byte-compiling is off when PYTHONDONTWRITEBYTECODE is set: not about the project
    assert [w for w in warnings if "byte-compiling is disabled" not in w] == []
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = next(archive.read(n).decode() for n in names if n.endswith("/METADATA"))
        for kind in EXAMPLES:
            shipped = archive.read(f"sidecar/examples/{kind}.yaml").decode()
            assert shipped == (ROOT / "sidecar" / "examples" / f"{kind}.yaml").read_text()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: Apache-2.0" in metadata.splitlines()
    assert {n for n in names if n.startswith("sidecar/examples/")} == {
        f"sidecar/examples/{kind}.yaml" for kind in EXAMPLES
    }


def pilotfish(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args],
        cwd=cwd, capture_output=True, text=True, timeout=30, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith(("CONSUL_", "OTEL_"))},
    )  # fmt: skip


@pytest.mark.parametrize("kind", [*EXAMPLES, None])
def test_pilotfish_example_prints_a_config_that_passes_check_config(
    tmp_path: Path, kind: str | None
):
    printed = pilotfish("example", *([kind] if kind else []), cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert (
        printed.stdout == (ROOT / "sidecar" / "examples" / f"{kind or 'static'}.yaml").read_text()
    )
    (tmp_path / "pilotfish.yaml").write_text(printed.stdout)
    checked = pilotfish("check-config", "pilotfish.yaml", cwd=tmp_path)
    assert (checked.returncode, checked.stdout) == (0, "pilotfish.yaml: ok (1 upstream)\n")


def test_an_unknown_example_is_a_usage_error(tmp_path: Path):
    done = pilotfish("example", "etcd", cwd=tmp_path)
    assert done.returncode == 2 and "'etcd' is not one of 'static', 'consul', 'dns'" in done.stderr


def test_make_clean_leaves_the_tree_as_cloned(tmp_path: Path):
    tree = tmp_path / "tree"
    cloned = tree_copy(tree)
    build_wheel(tree, tree / "dist")  # build/, pilotfish.egg-info/, dist/
    env = {**os.environ}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    for command in (
        [sys.executable, "-m", "venv", "--without-pip", ".venv"],
        [sys.executable, "-m", "pytest", "-q", "-p", "cacheprovider", "-o", "addopts=",
         "tests/resilience/test_backoff.py"],  # .pytest_cache/, .hypothesis/, __pycache__/
        [str(Path(sys.executable).parent / "ruff"), "check", "resilience"],  # .ruff_cache/
    ):  # fmt: skip
        subprocess.run(command, cwd=tree, env=env, capture_output=True, check=True, timeout=120)
    (tree / "bench" / "results").mkdir()
    (tree / "bench" / "results" / "run.json").write_text("{}")
    residue = {str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file()} - cloned
    assert {r.split("/")[0] for r in residue} >= {".venv", "build", "dist", ".pytest_cache"}
    assert any("__pycache__" in r for r in residue) and any(".ruff_cache" in r for r in residue)
    subprocess.run(
        [require("make"), "clean"], cwd=tree, capture_output=True, check=True, timeout=60
    )
    left = {str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file()}
    assert left == cloned
    assert not [p for p in tree.rglob("*") if p.is_dir() and not any(p.iterdir())]
