"""``make test`` on a machine without the programs some tests drive: scripts/system-deps
finds programs in the sbin directories too, lists what is missing with the command that
installs it, and fails only under CI=true; pytest then skips those tests and lists them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system_tools import SBIN, TOOLS_FILE, tools

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "system-deps"
FAKE = "no-such-program-pf"
PLAIN_PATH = "/usr/local/bin:/usr/bin:/bin"  # a normal user's PATH: no sbin directory


@pytest.fixture
def readable_dir() -> Iterator[Path]:
    """A directory an unprivileged user can read (pytest's own are private to their owner)."""
    with tempfile.TemporaryDirectory() as name:
        os.chmod(name, 0o755)
        yield Path(name)


def as_a_user(args: list[str]) -> list[str]:
    """``args`` run as an unprivileged user: as root, through setpriv as nobody."""
    if os.geteuid() != 0:
        return args
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "setpriv (util-linux) is part of every Debian system"
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *args]


def system_deps(folder: Path, tools_text: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The script, copied next to a tools list of our own, run as a user."""
    shutil.copy(SCRIPT, folder / "system-deps")
    (folder / "system-tools").write_text(tools_text)
    (folder / "system-tools").chmod(0o644)
    environ = {"PATH": PLAIN_PATH, "HOME": str(folder), **env}
    return subprocess.run(
        as_a_user([str(folder / "system-deps")]),
        env=environ, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def sbin_program() -> str:
    """Some program that is only in an sbin directory (Debian has several)."""
    for folder in SBIN:
        for path in sorted(Path(folder).glob("*")) if Path(folder).is_dir() else []:
            plain = any((Path(d) / path.name).exists() for d in PLAIN_PATH.split(":"))
            if path.is_file() and os.access(path, os.X_OK) and not plain:
                return path.name
    raise AssertionError("no program in /usr/local/sbin, /usr/sbin or /sbin")


def test_a_program_in_sbin_is_found_without_sbin_on_the_path(readable_dir: Path):
    done = system_deps(readable_dir, f"{sbin_program()} some-package the tests\n")
    assert (done.returncode, done.stderr) == (0, "")


def test_a_missing_program_is_listed_with_its_package_and_the_run_goes_on(readable_dir: Path):
    done = system_deps(readable_dir, f"{FAKE}|other-name pf-package the FAKE tests\n", CI="")
    assert done.returncode == 0
    assert f"{FAKE} (Debian package pf-package): the FAKE tests" in done.stderr
    assert "sudo apt-get install -y pf-package" in done.stderr
    assert "will be skipped and listed" in done.stderr


def test_under_ci_a_missing_program_is_an_error(readable_dir: Path):
    done = system_deps(readable_dir, f"{FAKE} pf-package the FAKE tests\n", CI="true")
    assert done.returncode == 1
    assert "CI=true" in done.stderr and "pf-package" in done.stderr


def test_the_list_names_each_program_once_with_a_package():
    listed = tools()
    assert {"dnsmasq", "chromium", "systemd-analyze", "curl", "nginx", "git", "make"} <= set(listed)
    assert all(t.package and t.needed_for for t in listed.values())
    assert TOOLS_FILE.parent == SCRIPT.parent


TEST_NEEDING_A_MISSING_PROGRAM = f"""
from pathlib import Path
from tests import system_tools

system_tools.TOOLS_FILE = Path(__file__).parent / "system-tools"

def test_needs_it():
    system_tools.require("{FAKE}")

def test_needs_nothing():
    pass
"""


@pytest.mark.parametrize("ci", ["", "true"])
def test_pytest_skips_and_lists_or_under_ci_fails_a_test_whose_program_is_missing(
    tmp_path: Path, ci: str
):
    (tmp_path / "system-tools").write_text(f"{FAKE} pf-package the FAKE tests\n")
    (tmp_path / "test_needing.py").write_text(TEST_NEEDING_A_MISSING_PROGRAM)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "-o", "addopts=", str(tmp_path / "test_needing.py")],
        cwd=ROOT, env={**os.environ, "CI": ci}, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    if ci:
        assert done.returncode == 1, done.stdout
        assert "1 failed, 1 passed" in done.stdout
        assert "CI=true: a missing program is a failure" in done.stdout
    else:
        assert done.returncode == 0, done.stdout
        assert "1 passed, 1 skipped" in done.stdout
        assert "NOT RUN: 1 test needs programs" in done.stdout
        assert f"{FAKE} (Debian package pf-package)" in done.stdout
        assert "sudo apt-get install -y pf-package" in done.stdout
        assert "test_needing.py::test_needs_it" in done.stdout


def test_ci_runs_make_test_with_ci_true(tmp_path: Path):
    (tmp_path / "make").write_text('#!/bin/sh\necho "make $* with CI=$CI in $PWD"\n')
    (tmp_path / "make").chmod(0o755)
    done = subprocess.run(
        [str(ROOT / ".ci" / "run")],
        env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "CI": "false"},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (0, f"make test with CI=true in {ROOT}\n")
