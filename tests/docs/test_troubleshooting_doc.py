"""docs/troubleshooting.md and ``sidecar.troubleshooting`` agree with each other and with
what the code sends: every ``x-pilotfish-error`` reason with its status and flag, and every
response flag, has one row, and no row names something the code never sends."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import sidecar
from sidecar.pipeline import layers  # noqa: F401  (defines a ProxyError subclass)
from sidecar.pipeline.errors import ProxyError
from sidecar.telemetry.access_log import FLAG_OF_ERROR
from sidecar.troubleshooting import FLAGS, REASONS, Reason, describe, explain, markdown
from tests.docs.doc_commands import ROOT, blocks

DOC = ROOT / "docs" / "troubleshooting.md"
SOURCE = Path(sidecar.__file__).parent
GENERATED = re.compile(
    r"^<!-- Generated from sidecar/troubleshooting\.py.*?-->\n(.*)"
    r"^<!-- end of generated tables -->",
    re.MULTILINE | re.DOTALL,
)


def subclasses(cls: type) -> list[type]:
    return [c for sub in cls.__subclasses__() for c in (sub, *subclasses(sub))]


def source_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(SOURCE.rglob("*.py")))


def sent_reasons() -> dict[str, tuple[int | None, str]]:
    """Every reason the code can put in x-pilotfish-error (or its span), with status and flag."""
    found: dict[str, tuple[int | None, str]] = {
        c.reason: (c.status if c.answered else None, c.flag) for c in subclasses(ProxyError)
    }
    text = source_text()
    # the listener's own refusals name their reason where they are made
    for status, reason in re.findall(r'Refusal\(\s*(\d+),[^()]*?"([a-z_]+)"\s*\)', text):
        found.setdefault(reason, (int(status), FLAG_OF_ERROR.get(reason, "")))
    for status, reason in re.findall(r'_error\(\s*out,\s*(\d+),\s*"([a-z_]+)"', text):
        found.setdefault(reason, (int(status), FLAG_OF_ERROR.get(reason, "")))
    for reason in re.findall(r'error: str \| None = "([a-z_]+)"', text):
        found.setdefault(reason, (None, FLAG_OF_ERROR.get(reason, "")))  # the client left
    return found


def sent_flags() -> set[str]:
    flags = {c.flag for c in subclasses(ProxyError) if c.flag} | set(FLAG_OF_ERROR.values())
    return flags | set(re.findall(r'add_flag\("([A-Z]+)"\)', source_text()))


def test_the_page_holds_the_tables_of_the_module():
    found = GENERATED.search(DOC.read_text(encoding="utf-8"))
    assert found is not None, "the generated tables' markers are missing"
    assert found.group(1) == markdown()


def test_every_reason_the_code_sends_has_one_row_with_its_status_and_flag():
    table = {r.name: (r.status, r.flag) for r in REASONS}
    assert len(table) == len(REASONS)
    sent = sent_reasons()
    assert {"not_implemented", "request_timeout", "downstream_disconnect"} <= set(sent)
    assert table == sent


def test_every_flag_has_one_row_and_the_reasons_flags_agree_with_the_access_log():
    assert [f.name for f in FLAGS] == list(dict.fromkeys(f.name for f in FLAGS))
    assert {f.name for f in FLAGS} == sent_flags()
    for reason, flag in FLAG_OF_ERROR.items():
        entry = explain(reason)
        assert isinstance(entry, Reason) and entry.flag == flag, reason


def test_the_metrics_the_table_names_are_documented_ones():
    observability = (ROOT / "docs" / "observability.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`(pilotfish_[a-z_]+)`", markdown()))
    assert named, "the table points at no metric"
    assert {m for m in named if f"`{m}`" not in observability} == set()


def pilotfish_explain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", "explain", *args],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_the_page_shows_what_pilotfish_explain_prints():
    (shown,) = [b.text for b in blocks(DOC.read_text(encoding="utf-8")) if b.lang == "console"]
    command, _, output = shown.partition("\n")
    words = command.removeprefix("$ ").split()
    assert words[:2] == [".venv/bin/pilotfish", "explain"]
    done = pilotfish_explain(*words[2:])
    assert (done.returncode, done.stdout) == (0, output)


@pytest.mark.parametrize("name", ["connect_failure", "urx", "downstream_disconnect"])
def test_pilotfish_explain_prints_the_entry(name: str):
    done = pilotfish_explain(name)
    entry = explain(name)
    assert entry is not None
    assert (done.returncode, done.stdout) == (0, describe(entry))


def test_pilotfish_explain_lists_what_it_knows_for_an_unknown_name():
    done = pilotfish_explain("upstream_error")
    assert done.returncode == 2
    assert "unknown reason or flag 'upstream_error'; known: bad_request, no_route" in done.stderr
