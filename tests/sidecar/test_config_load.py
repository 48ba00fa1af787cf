"""What the loader says about mistakes made before validation: keys given twice, a bare
``${VAR}`` in a flow collection, an unset variable; and plurals in check-config's lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sidecar.config import ConfigError, load_text, plural

SMALL = """\
service:
  name: orders
  port: 8080
upstreams:
  - name: payments
    listen: 127.0.0.1:9191
    discovery: {static: [10.0.0.5:8080]}
    retries:
      attempts: 2
      per_try_timeout: 1s
      attempts: 5
"""


def errors_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_text(text, environ=env or {})
    return info.value.errors


def test_a_key_given_twice_is_refused_by_its_path_with_both_lines():
    assert errors_of(SMALL) == ["upstreams[0].retries.attempts: given twice (lines 9 and 11)"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("service: {name: a, port: 1}\nservice: {name: b, port: 2}\n",
         ["service: given twice (lines 1 and 2)"]),
        ("service: {name: a, port: 1, name: b}\n", ["service.name: given twice (line 1)"]),
        ("service: {name: a, port: 1}\nupstreams:\n- {name: x, listen: '127.0.0.1:1',"
         " discovery: {static: ['1.2.3.4:5', {address: h, port: 1, port: 2}]}}\n",
         ["upstreams[0].discovery.static[1].port: given twice (line 3)"]),
        ("service: {name: a, port: 1}\ndrain_timeout: 1s\nlog_level: info\ndrain_timeout: 2s\n"
         "log_level: debug\n",
         ["drain_timeout: given twice (lines 2 and 4)", "log_level: given twice (lines 3 and 5)"]),
    ],
)  # fmt: skip
def test_every_key_given_twice_is_reported(text: str, expected: list[str]):
    assert errors_of(text) == expected


def test_keys_brought_in_by_a_merge_may_be_overridden():
    text = (
        "service: {name: a, port: 1}\nupstreams:\n- &base {name: x, listen: '127.0.0.1:1', "
        "discovery: {static: ['1.2.3.4:5']}}\n- {<<: *base, name: y, listen: '127.0.0.1:2'}\n"
    )
    config = load_text(text, environ={})
    assert [(u.name, str(u.listen)) for u in config.upstreams] == [
        ("x", "127.0.0.1:1"),
        ("y", "127.0.0.1:2"),
    ]


@pytest.mark.parametrize(
    ("text", "bare"),
    [
        ("service: {name: orders, port: ${APP_PORT}}\n", "${APP_PORT}"),
        ("service: {name: orders, port: 1}\nupstreams:\n- {name: x, listen: '127.0.0.1:1',"
         " discovery: {static: [${BACKEND:-127.0.0.1:80}]}}\n", "${BACKEND:-127.0.0.1:80}"),
    ],
)  # fmt: skip
def test_a_bare_variable_in_a_flow_collection_gets_a_hint_to_quote_it(text: str, bare: str):
    (error,) = errors_of(text, {"APP_PORT": "8080"})
    assert error.startswith("invalid YAML at line ")
    assert error.endswith(f'inside {{...}} or [...] write {bare} in quotes: "{bare}"')
    quoted = text.replace(bare, f'"{bare}"')
    assert load_text(quoted, environ={"APP_PORT": "8080"}).service.name == "orders"


def test_a_yaml_error_elsewhere_gets_no_such_hint():
    (error,) = errors_of("service: {name: orders, port: 1\n")
    assert error.startswith("invalid YAML") and "quotes" not in error


@pytest.mark.parametrize(
    "text",
    [
        "service: {name: orders, port: '${APP_PORT}'}\n",
        "service:\n  name: orders\n  port: ${APP_PORT}\n",
    ],
)
def test_an_unset_variable_is_one_error(text: str):
    assert errors_of(text) == ["service.port: environment variable APP_PORT is not set"]


def test_other_errors_still_show_beside_an_unset_variable():
    errors = errors_of("service: {name: '${NAME}', port: 0}\n")
    assert errors == [
        "service.name: environment variable NAME is not set",
        "service.port: must be in 1..65535, got 0",
    ]


@pytest.mark.parametrize(
    ("count", "noun", "text"),
    [(0, "error", "0 errors"), (1, "error", "1 error"), (2, "upstream", "2 upstreams")],
)
def test_plural(count: int, noun: str, text: str):
    assert plural(count, noun) == text


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", "check-config", str(path)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_check_config_counts_in_the_singular_and_the_plural(tmp_path: Path):
    path = tmp_path / "pilotfish.yaml"
    path.write_text(SMALL)
    one = check_config(path)
    assert (one.returncode, one.stderr.splitlines()[0]) == (2, f"{path}: invalid config (1 error)")
    path.write_text(SMALL.replace("attempts: 5", "attempt: 5").replace("port: 8080", "port: 0"))
    two = check_config(path)
    assert two.stderr.splitlines()[0] == f"{path}: invalid config (2 errors)"
    path.write_text(SMALL.replace("      attempts: 5\n", ""))
    ok = check_config(path)
    assert (ok.returncode, ok.stdout) == (0, f"{path}: ok (1 upstream)\n")
