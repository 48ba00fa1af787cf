"""Each docs page is tested where it has commands: every shell command in README.md and
docs/*.md is run here, or copied from one that a named test runs.

Run here (``tests/docs/page_run.py``): ``pilotfish check-config``, ``pilotfish run --config``
and ``curl -s`` against the sidecar the page started. Listed (``LISTED`` in
``tests/docs/doc_commands.py``): the rest, each with where it runs. A page that gains a
command matching neither fails ``test_every_command_is_run_or_listed``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.docs.doc_commands import (
    LISTED,
    QUICKSTART,
    ROOT,
    all_commands,
    blocks,
    commands_in,
    config_blocks,
    is_runnable,
    listing,
    pages,
    read,
    source_of,
    uncovered,
)
from tests.docs.page_run import page_run


def test_every_command_is_run_or_listed():
    commands = all_commands()
    assert len(commands) >= 10
    assert uncovered(commands) == []


def test_a_new_command_is_caught():
    page = "```sh\n.venv/bin/pilotfish check-config pilotfish.yaml\nmake bench\n```\n"
    assert uncovered(commands_in("new.md", page)) == ["new.md:3: make bench"]


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("```sh\nmake demo   # comment\n\n# only a comment\n```\n", ["make demo"]),
        ("```bash\ncurl -s \\\n  127.0.0.1:1/ready\n```\n", ["curl -s 127.0.0.1:1/ready"]),
        ("```console\n$ make test\nok\n$ make demo\n```\n", ["make test", "make demo"]),
        ("```text\nmake demo\n```\n```yaml\nx: 1\n```\n", []),
        (
            "```shell\nA='x y' pilotfish run --config f.yaml\n```\n",
            ["A=x y pilotfish run --config f.yaml"],
        ),
    ],
)
def test_commands_are_read_from_shell_blocks_only(markdown: str, expected: list[str]):
    assert [c.text for c in commands_in("p.md", markdown)] == expected


def test_every_listed_command_is_in_the_docs_and_runs_where_it_says():
    commands = [c.text for c in all_commands()]
    for entry in LISTED:
        assert any(re.fullmatch(entry.command, c) for c in commands), f"unused: {entry.command}"
        for evidence in entry.runs_it:
            assert evidence.shows in source_of(evidence.where), (entry.command, evidence)
    assert not any(is_runnable(c) and listing(c) for c in commands), "run it instead"


RUN_PAGES = [p for p in pages() if any(is_runnable(c.text) for c in commands_in(p, read(p)))]


@pytest.mark.parametrize("page", RUN_PAGES)
async def test_the_page_commands_run(page: str, tmp_path: Path):
    commands = [c for c in commands_in(page, read(page)) if is_runnable(c.text)]
    async with page_run(tmp_path) as run:
        for command in commands:
            await run.execute(command)


def test_the_quickstart_shows_what_check_config_prints(tmp_path: Path):
    shown = next(b.text for b in blocks(read(QUICKSTART)) if "invalid config (" in b.text)
    path = re.search(r"^  (upstreams\[0\]\.\w+): unknown key", shown, re.MULTILINE)
    assert path is not None, shown
    config = yaml.safe_load(config_blocks(read(QUICKSTART))[0].text)
    config["upstreams"][0][path.group(1).rpartition(".")[2]] = {"attempts": 3}
    (tmp_path / "pilotfish.yaml").write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "check-config", "pilotfish.yaml"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == shown
