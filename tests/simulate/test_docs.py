"""docs/simulate.md stays true: its worked story is what the shipped example prints, the
files it shows are the shipped ones, and every scenario key is documented."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import typing
from pathlib import Path

from sidecar.simulate.load import example_dir, example_names
from sidecar.simulate.scenario import DISCOVERY_KINDS, FAULT_KINDS, Scenario
from tests.docs.doc_commands import blocks

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "simulate.md").read_text(encoding="utf-8")


def test_the_worked_story_is_what_the_example_prints():
    args = ["--example", "flapping-endpoint", "--compare", "tuned"]
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "simulate", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    shown = [b.text for b in blocks(PAGE) if b.lang == "text"]
    assert done.stdout.rstrip("\n") + "\n" in shown


def test_the_page_shows_the_shipped_scenario_and_configuration():
    folder = example_dir("flapping-endpoint")
    yaml_blocks = [b.text for b in blocks(PAGE) if b.lang == "yaml"]
    for name in ("scenario.yaml", "tuned.yaml"):
        assert folder.joinpath(name).read_text(encoding="utf-8") in yaml_blocks


def scenario_keys() -> set[str]:
    keys: set[str] = set()
    pending: list[type] = [Scenario]
    seen: set[type] = set()
    while pending:
        cls = pending.pop()
        if cls in seen:
            continue
        seen.add(cls)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            keys.add(f.metadata.get("key") or f.name)
            for arg in _types_in(hints[f.name]):
                if dataclasses.is_dataclass(arg):
                    pending.append(arg)
    return keys


def _types_in(hint: object) -> list[type]:
    args = typing.get_args(hint)
    if not args:
        return [hint] if isinstance(hint, type) else []
    return [t for a in args for t in _types_in(a)]


def test_every_scenario_key_and_kind_is_documented():
    documented = set(re.findall(r"`([a-z_0-9]+)`", PAGE))
    assert scenario_keys() - documented == set()
    assert set(FAULT_KINDS) | set(DISCOVERY_KINDS) <= documented


def test_every_example_is_named_in_the_options_table():
    row = next(line for line in PAGE.splitlines() if line.startswith("| `--example NAME`"))
    assert set(example_names()) <= set(re.findall(r"`([a-z-]+)`", row))
