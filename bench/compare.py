"""Two builds of Pilotfish side by side: ``python -m bench.compare A B [--rounds N]``.

Each of ``A`` and ``B`` is a git revision of this repository or a directory holding a
checkout (``HEAD`` and ``.``, the working tree, are the usual pair). Both builds run at
once, each from its own source tree on the same interpreter and dependencies, with the
benchmark's two configurations (policies on and all off), all four pinned to the proxy
core; the nginx backend and the load run on the other. Loads alternate between the builds
(A B, then B A, ...), so the drift of a shared machine falls on both alike. An A/A run (the
same revision twice) shows the harness's own noise: its ratios should read 1.00 within a
few hundredths.

Per configuration and round: requests/s under ``wrk -c64`` (saturated), CPU per request at
a fixed 1000 req/s (the open-loop generator), and at the end each process's peak RSS. The
report gives each build's median and the B/A ratio of the medians with the range of the
per-round ratios.

Invariants: as in ``bench.run``: load only to 127.0.0.1, every process stopped on the way
out, the run bounded by ``--time-limit``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench.load import run_loadgen, run_wrk
from bench.measure import LOAD_CORE, PROXY_CORE, THROUGHPUT_CONNECTIONS, http_status
from bench.processes import ProcessRegistry, wait_until
from bench.procstat import tree_cpu_seconds, tree_peak_rss_mib
from bench.targets import BENCH_DIR, CONFIG_DIR, PILOTFISH_CONFIGS, Workspace, backend
from bench.targets import prepare_workdir as prepare
from bench.toolchain import build_go, ensure_packages

REPO = BENCH_DIR.parent
CPU_RATE = 1000


@dataclass
class Instance:
    build: str  # "A" or "B"
    config: str  # key of PILOTFISH_CONFIGS
    listen: str
    admin: str
    proc: subprocess.Popen[bytes] | None = None
    rps: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    rss_mib: float = 0.0


def _checkout(ref: str, into: Path) -> Path:
    """A directory with the sources of ``ref``: itself if it is a directory."""
    given = Path(ref)
    if given.is_dir():
        return given.resolve()
    target = into
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", ref],
        capture_output=True,
        check=True,
    )
    target.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def _config(key: str, listen_port: int, admin_port: int, inbound_port: int, out: Path) -> Path:
    data = yaml.safe_load((CONFIG_DIR / PILOTFISH_CONFIGS[key]).read_text())
    data["upstreams"][0]["listen"] = f"127.0.0.1:{listen_port}"
    data["listeners"]["admin"]["port"] = admin_port
    data["listeners"]["inbound"]["port"] = inbound_port
    out.write_text(yaml.safe_dump(data))
    return out


def _imports_from(source: Path) -> None:
    """Check that a process given ``source`` runs that build's code, not the installed one."""
    found = subprocess.run(
        [sys.executable, "-P", "-c", "import sidecar; print(sidecar.__file__)"],
        env={**os.environ, "PYTHONPATH": str(source)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(found).resolve().is_relative_to(source):
        raise RuntimeError(f"{source}: the sidecar package came from {found}")


def _start(inst: Instance, source: Path, config: Path, registry: ProcessRegistry) -> None:
    # -P: the working directory is not put first on sys.path, so PYTHONPATH picks the build.
    env = {"PYTHONPATH": str(source)}
    argv = [sys.executable, "-P", "-m", "sidecar", "run", "--config", str(config)]
    inst.proc = registry.spawn(f"{inst.build}-{inst.config}", argv, PROXY_CORE, env)
    ready = wait_until(lambda: http_status(inst.admin, "/ready") == 200, 30)
    if not ready or http_status(inst.listen, "/small") != 200:
        tail = registry.log_tail(f"{inst.build}-{inst.config}")
        raise RuntimeError(f"{inst.build} {inst.config} did not start:\n{tail}")


def _measure(inst: Instance, loadgen: Path, seconds: float) -> None:
    assert inst.proc is not None
    url = f"http://{inst.listen}/small"
    wrk = run_wrk(url, seconds, THROUGHPUT_CONNECTIONS, LOAD_CORE)
    if wrk.non_2xx or not wrk.requests:
        raise RuntimeError(f"{inst.build} {inst.config}: wrk {wrk}")
    inst.rps.append(wrk.requests_per_s)
    before = tree_cpu_seconds(inst.proc.pid)
    fixed = run_loadgen(
        loadgen, url, rate=CPU_RATE, connections=64, warmup_s=0.5, seconds=seconds, core=LOAD_CORE
    )
    if fixed.errors or not fixed.ok_total:
        raise RuntimeError(f"{inst.build} {inst.config}: fixed rate: {fixed.first_error}")
    inst.cpu_us.append((tree_cpu_seconds(inst.proc.pid) - before) / fixed.ok_total * 1e6)


def _ratio_line(name: str, a: list[float], b: list[float], unit: str) -> str:
    ma, mb = statistics.median(a), statistics.median(b)
    per_round = [y / x for x, y in zip(a, b, strict=True) if x]
    spread = f"{min(per_round):.2f} to {max(per_round):.2f}" if per_round else "-"
    return f"| {name} | {ma:,.1f} {unit} | {mb:,.1f} {unit} | {mb / ma:.2f} ({spread}) |"


def _report(instances: list[Instance], a_ref: str, b_ref: str) -> str:
    lines = [
        f"A = `{a_ref}`, B = `{b_ref}`; medians over {len(instances[0].rps)} alternating rounds;"
        " B/A with the range of the per-round ratios.",
        "",
        "| measure | A | B | B/A |",
        "| --- | ---: | ---: | ---: |",
    ]
    for key in PILOTFISH_CONFIGS:
        a = next(i for i in instances if i.build == "A" and i.config == key)
        b = next(i for i in instances if i.build == "B" and i.config == key)
        lines.append(_ratio_line(f"{key}: requests/s (wrk -c64)", a.rps, b.rps, "/s"))
        cpu = f"{key}: CPU per request at {CPU_RATE}/s"
        lines.append(_ratio_line(cpu, a.cpu_us, b.cpu_us, "µs"))
        lines.append(
            f"| {key}: peak RSS | {a.rss_mib:.1f} MiB | {b.rss_mib:.1f} MiB |"
            f" {b.rss_mib / a.rss_mib:.2f} |"
        )
    return "\n".join(lines)


def _run(args: argparse.Namespace, registry: ProcessRegistry, workdir: Path) -> str:
    ensure_packages()
    loadgen = build_go(BENCH_DIR / "loadgen" / "main.go", workdir / "loadgen")
    ws = Workspace(workdir=workdir, loadgen=loadgen, goproxy=loadgen, pilotfish=None)
    prepare(ws)
    sources = {"A": _checkout(args.a, workdir / "A"), "B": _checkout(args.b, workdir / "B")}
    for source in sources.values():
        _imports_from(source)
    back = backend(ws)
    assert back.argv is not None
    registry.spawn("backend", list(back.argv), LOAD_CORE)
    if not wait_until(lambda: http_status(back.listen, "/small") == 200, 10):
        raise RuntimeError("backend did not start:\n" + registry.log_tail("backend"))
    instances: list[Instance] = []
    port = 29100
    for build in ("A", "B"):
        for key in PILOTFISH_CONFIGS:
            inst = Instance(build, key, f"127.0.0.1:{port}", f"127.0.0.1:{port + 1}")
            config = _config(key, port, port + 1, port + 2, workdir / f"{build}-{key}.yaml")
            _start(inst, sources[build], config, registry)
            instances.append(inst)
            port += 10
    for inst in instances:  # warm every process up once before anything is counted
        run_wrk(f"http://{inst.listen}/small", 1, THROUGHPUT_CONNECTIONS, LOAD_CORE)
    for round_no in range(args.rounds):
        order = ("A", "B") if round_no % 2 == 0 else ("B", "A")
        for key in PILOTFISH_CONFIGS:
            for build in order:
                inst = next(i for i in instances if i.build == build and i.config == key)
                print(f"round {round_no + 1}/{args.rounds}: {build} {key}", file=sys.stderr)
                _measure(inst, loadgen, args.seconds)
    for inst in instances:
        assert inst.proc is not None
        inst.rss_mib = tree_peak_rss_mib(inst.proc.pid)
    return _report(instances, args.a, args.b)


def _on_signal(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.compare", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("a", help="git revision or directory of build A (the baseline)")
    parser.add_argument("b", help="git revision or directory of build B")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=5.0, help="each load's length")
    parser.add_argument("--time-limit", type=float, default=20.0, help="minutes")
    args = parser.parse_args(argv)
    if not {PROXY_CORE, LOAD_CORE} <= os.sched_getaffinity(0):
        raise SystemExit(f"the comparison needs cores {PROXY_CORE} and {LOAD_CORE}")
    os.sched_setaffinity(0, {LOAD_CORE})
    workdir = Path(tempfile.mkdtemp(prefix="pilotfish-compare-"))
    registry = ProcessRegistry(workdir)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(sig, _on_signal)
    signal.alarm(int(args.time_limit * 60))
    try:
        print(_run(args, registry, workdir))
        return 0
    except KeyboardInterrupt as stop:
        print(f"stopped: {stop}", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
        registry.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
