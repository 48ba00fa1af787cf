"""``pilotfish simulate`` as a user runs it: its own process, files in, table, JSON and PNG out."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sidecar.simulate.command import run_command

SCENARIO = """
description: two endpoints, one refusing for ten seconds
duration: 30s
load: {rate: 200}
upstreams:
  api:
    latency: {p50: 5ms, p99: 40ms}
    endpoints: [a, b]
    faults: [{endpoint: b, kind: refuse, at: 10s, for: 10s}]
"""


MIXED = """
description: two upstreams, every kind of randomness
duration: 20s
load:
  rate: 300
  keys: {count: 500, distribution: zipf}
  mix: [{method: GET, weight: 3}, {method: POST, body: 1KiB}]
upstreams:
  api:
    latency: {p50: 5ms, p99: 80ms}
    endpoints: [a, b, c]
    faults:
      - {endpoint: b, kind: errors, probability: 0.4, at: 2s, for: 5s, every: 8s}
      - {endpoint: c, kind: hang, probability: 0.2, at: 5s}
  cache:
    load: {rate: 200, arrivals: even, keys: {count: 100}}
    endpoints: [x, y, z]
    faults: [{endpoint: y, kind: reset, probability: 0.5, at: 3s, for: 10s}]
"""


def write_config(path: Path, **policies: object) -> Path:
    doc = {
        "service": {"name": "test", "port": 1},
        "upstreams": [
            {
                "name": "api",
                "listen": "127.0.0.1:9191",
                "discovery": {"static": ["10.0.0.1:80"]},
                **policies,
            },
            {
                "name": "cache",
                "listen": "127.0.0.1:9192",
                "discovery": {"static": ["10.0.0.1:80"]},
                "balancer": {"policy": "ring_hash", "hash_on": "header:x-user"},
                "health_check": {"http": {}, "interval": "1s"},
            },
        ],
    }
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def pilotfish(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", "simulate", *args],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, **(env or {})},
        check=False,
    )


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    return {
        "scenario": scenario,
        "config": write_config(tmp_path / "pilotfish.yaml"),
        "bare": write_config(tmp_path / "bare.yaml", retries={"attempts": 0}),
        "dir": tmp_path,
    }


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_a_run_prints_the_table_and_writes_json_and_a_png(files):
    out_json, out_png = files["dir"] / "out.json", files["dir"] / "out.png"
    args = ["--config", str(files["config"]), "--scenario", str(files["scenario"])]
    done = pilotfish(*args, "--json", str(out_json), "--plot", str(out_png))
    assert done.returncode == 0, done.stderr
    assert "upstream api (round_robin, 2 endpoints)" in done.stdout
    assert "client success rate" in done.stdout
    assert "simulated 30s of traffic" in done.stderr
    data = json.loads(out_json.read_text(encoding="utf-8"))
    api = data["upstreams"]["api"]
    assert data["config"] == str(files["config"])
    assert api["requests"] == sum(api["timeline"]["requests"])
    assert api["ejection_log"][0]["endpoint"] == "b"
    assert api["success_rate"] > 0.999
    width, height = png_size(out_png)
    assert width > 500 and height > 500


def test_compare_runs_two_configs_on_the_same_traffic_and_shows_the_difference(files):
    done = pilotfish(
        "--config", str(files["config"]), "--scenario", str(files["scenario"]),
        "--compare", str(files["bare"]), "--json", str(files["dir"] / "both.json"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    head = next(line for line in done.stdout.splitlines() if "difference" in line)
    assert str(files["config"]) in head and str(files["bare"]) in head
    runs = json.loads((files["dir"] / "both.json").read_text(encoding="utf-8"))["runs"]
    with_retries, bare = (r["upstreams"]["api"] for r in runs)
    assert with_retries["requests"] == bare["requests"]  # the same arrivals
    assert bare["retries"] == 0 < with_retries["retries"]
    assert bare["success_rate"] < with_retries["success_rate"]
    row = next(line for line in done.stdout.splitlines() if line.strip().startswith("retries "))
    assert row.split()[-1] == f"-{with_retries['retries']:,}"


def test_the_same_seed_gives_byte_identical_json_in_any_process(files):
    mixed = files["dir"] / "mixed.yaml"
    mixed.write_text(MIXED, encoding="utf-8")
    args = ["--config", str(files["config"]), "--scenario", str(mixed), "--json", "-"]
    one = pilotfish(*args, env={"PYTHONHASHSEED": "1"})
    two = pilotfish(*args, env={"PYTHONHASHSEED": "2"})
    other = pilotfish(*args, "--seed", "2")
    assert one.returncode == two.returncode == other.returncode == 0
    assert one.stdout == two.stdout
    data = json.loads(one.stdout)
    assert data["seed"] == 1 and list(data["upstreams"]) == ["api", "cache"]
    assert data["upstreams"]["cache"]["keys"]["seen"] == 100
    assert other.stdout != one.stdout


def test_a_bad_scenario_is_listed_by_path_with_exit_2_and_no_traceback(files):
    bad = files["dir"] / "bad.yaml"
    bad.write_text(SCENARIO.replace("refuse", "refuze").replace("p99: 40ms", "p90: 40ms"))
    done = pilotfish("--config", str(files["config"]), "--scenario", str(bad))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"{bad}: invalid scenario (3 errors)",
        "  upstreams.api.latency.p90: unknown key; did you mean 'p99'?",
        "  upstreams.api.latency: needs fixed, or both p50 and p99",
        "  upstreams.api.faults[0].kind: unknown value 'refuze'; did you mean 'refuse'? "
        "(expected one of: errors, refuse, reset, hang, slow, gone, back)",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "error: give one of --scenario FILE or --example NAME"),
        (["--scenario", "s.yaml"], "error: --config is required with --scenario"),
        (["--example", "flaping-endpoint"], "--example: invalid scenario (1 error)"),
        (
            ["--config", "missing.yaml", "--example", "flapping-endpoint"],
            "missing.yaml: invalid config (1 error)",
        ),
    ],
)
def test_wrong_arguments_exit_2_with_a_message(args, message):
    done = pilotfish(*args)
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == message
    assert "Traceback" not in done.stderr


def test_plot_without_matplotlib_says_how_to_get_it_before_running(files, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    code = run_command(
        config_path=str(files["config"]),
        scenario_path=str(files["scenario"]),
        example=None,
        compare_path=None,
        seed=None,
        plot_path=str(files["dir"] / "x.png"),
        json_path=None,
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err == (
        "error: --plot needs matplotlib, which is not installed: "
        "pip install 'pilotfish[simulate]'\n"
    )
    assert not (files["dir"] / "x.png").exists()
