"""The programs some tests drive for real (dnsmasq, Chromium, systemd-analyze, curl).

They are listed once, in ``scripts/system-tools``, which ``scripts/system-deps`` reads too;
they are looked for on the PATH and in the sbin directories, as that script does. A test
that needs one calls ``require``: a missing program fails the test under ``CI=true`` (CI
must run everything) and skips it elsewhere, with a reason that ``tests/conftest.py`` lists
loudly at the end of the run, so a first ``make test`` without root still runs every other
test.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

TOOLS_FILE = Path(__file__).resolve().parents[1] / "scripts" / "system-tools"
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")
REASON_PREFIX = "missing program: "


@dataclass(frozen=True)
class Tool:
    names: tuple[str, ...]  # alternatives, the first is the usual one
    package: str  # Debian's
    needed_for: str

    @property
    def name(self) -> str:
        return self.names[0]


def tools(text: str | None = None) -> dict[str, Tool]:
    """The programs of ``scripts/system-tools`` by their first name."""
    if text is None:
        text = TOOLS_FILE.read_text(encoding="utf-8")
    found: dict[str, Tool] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        names, package, needed_for = line.split(maxsplit=2)
        tool = Tool(tuple(names.split("|")), package, needed_for)
        found[tool.name] = tool
    return found


def in_ci(environ: os._Environ[str] | dict[str, str] = os.environ) -> bool:
    return environ.get("CI", "") in ("true", "True", "TRUE", "1")


def find(name: str) -> str | None:
    """Where the program ``name`` (or one of its alternatives) is, or None."""
    search = os.pathsep.join([os.environ.get("PATH", ""), *SBIN])
    for candidate in tools()[name].names:
        path = shutil.which(candidate, path=search)
        if path is not None:
            return path
    return None


def require(name: str) -> str:
    """The path of ``name``; when it is missing, fails the test under CI, else skips it."""
    path = find(name)
    if path is not None:
        return path
    tool = tools()[name]
    why = (
        f"{REASON_PREFIX}{tool.name} (Debian package {tool.package}), needed for "
        f"{tool.needed_for}; install it with: sudo apt-get install -y {tool.package}"
    )
    if in_ci():
        pytest.fail(f"{why} (CI=true: a missing program is a failure)", pytrace=False)
    pytest.skip(why)
