"""Run Pilotfish's benchmark: ``python -m bench.run [--quick] [--rounds N] [--targets ...]``.

Starts the backend, then for each round measures every target in turn (A B C, A B C ...) so
that drift of a shared machine spreads over all of them; prints the markdown tables and writes
docs/benchmarks-results.md, docs/benchmarks-latency.png and the raw figures of every round
under bench/results/.

Invariants: the harness itself stays on the load core; the whole run is bounded by
``--time-limit`` and stops itself past it; every process it started is stopped on the way out,
whether the run ends normally, on an exception, on Ctrl-C or on SIGTERM.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from bench import machine, report
from bench.measure import (
    LOAD_CORE,
    PROXY_CORE,
    Plan,
    TargetFailed,
    http_status,
    measure_round,
)
from bench.plot import plot_latency
from bench.processes import ProcessRegistry, wait_until
from bench.stats import TargetResults
from bench.targets import BENCH_DIR, Workspace, all_targets, backend, prepare_workdir
from bench.toolchain import build_go, ensure_packages

REPO = BENCH_DIR.parent
DOCS = REPO / "docs"
RESULTS_MD = "benchmarks-results.md"
LATENCY_PNG = "benchmarks-latency.png"
RAW_DIR = BENCH_DIR / "results"
DOC_BEGIN = "<!-- results:begin -->"
DOC_END = "<!-- results:end -->"


class TimeLimitReached(Exception):
    """The run went past --time-limit."""


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.splitlines()[0]
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="one short round, to check the setup")
    add("--rounds", type=int, default=3, help="rounds (default 3; --quick means 1)")
    add("--targets", nargs="+", metavar="KEY", help="only these targets (default: all)")
    add("--out-dir", type=Path, default=DOCS, help="where results go (default: docs/)")
    add("--update-docs", action="store_true", help="paste the tables into docs/benchmarks.md")
    add("--time-limit", type=float, default=25.0, help="minutes before the run stops itself")
    add("--keep-workdir", action="store_true", help="keep rendered configs and logs")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def _find_pilotfish() -> Path | None:
    beside = Path(sys.executable).parent / "pilotfish"
    if beside.exists():
        return beside
    found = shutil.which("pilotfish")
    return Path(found) if found else None


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    if signum == signal.SIGALRM:
        raise TimeLimitReached("time limit reached")
    raise KeyboardInterrupt(f"signal {signum}")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _results_body(
    results: list[TargetResults], plan: Plan, facts: dict[str, str], plot_note: str | None
) -> str:
    """The run's date, machine, tables and plot: the results file's body and the docs' block."""
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine_rows = "\n".join(f"| {k} | {v} |" for k, v in facts.items())
    kind = "a quick check (one short round)" if plan.short else f"{plan.rounds} rounds"
    picture = f"![Latency vs offered load]({LATENCY_PNG})"
    if plot_note is not None:
        picture = f"No plot: {plot_note}."
    return (
        f"Run on {when}, {kind}, with `python -m bench.run`.\n\n"
        f"| machine | |\n| --- | --- |\n{machine_rows}\n\n"
        + report.markdown(results, plan.rates, plan.rounds)
        + f"\n{picture}\n"
    )


def _save_raw(results: list[TargetResults], plan: Plan, facts: dict[str, str]) -> Path:
    """Every round's figures as JSON under bench/results/ (not versioned), for later study."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RAW_DIR / f"{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "plan": dataclasses.asdict(plan),
        "machine": facts,
        "targets": [dataclasses.asdict(r) for r in results],
    }
    out.write_text(json.dumps(payload, indent=1) + "\n")
    return out


def _update_docs(doc: Path, body: str) -> None:
    text = doc.read_text()
    if DOC_BEGIN not in text or DOC_END not in text:
        raise RuntimeError(f"{doc.name} has no {DOC_BEGIN} ... {DOC_END} block")
    head, rest = text.split(DOC_BEGIN, 1)
    _, tail = rest.split(DOC_END, 1)
    doc.write_text(f"{head}{DOC_BEGIN}\n{body}{DOC_END}{tail}")


def _run(args: argparse.Namespace, registry: ProcessRegistry, workdir: Path) -> int:
    plan = Plan.quick() if args.quick else Plan.full(args.rounds)
    ensure_packages()
    _log("building the Go load generator and gateway")
    ws = Workspace(
        workdir=workdir,
        loadgen=build_go(BENCH_DIR / "loadgen" / "main.go", workdir / "loadgen"),
        goproxy=build_go(BENCH_DIR / "goproxy" / "main.go", workdir / "goproxy"),
        pilotfish=_find_pilotfish(),
    )
    prepare_workdir(ws)
    targets = all_targets(ws)
    if args.targets:
        unknown = set(args.targets) - {t.key for t in targets}
        if unknown:
            known = [t.key for t in targets]
            raise SystemExit(f"unknown targets {sorted(unknown)}; known: {known}")
        targets = [t for t in targets if t.key in args.targets]
    results = [TargetResults(t.key, t.label, unavailable=t.unavailable) for t in targets]

    backend_target = backend(ws)
    assert backend_target.argv is not None
    backend_proc = registry.spawn("backend", list(backend_target.argv), LOAD_CORE)
    if not wait_until(lambda: http_status(backend_target.listen, "/small") == 200, 10):
        raise RuntimeError("backend did not start:\n" + registry.log_tail("backend"))

    for round_no in range(1, plan.rounds + 1):
        for target, result in zip(targets, results, strict=True):
            if target.unavailable:
                continue
            _log(f"round {round_no}/{plan.rounds}: {target.key}")
            started = time.monotonic()
            try:
                result.rounds.append(measure_round(target, plan, registry, ws.loadgen))
            except (TargetFailed, RuntimeError, ValueError, subprocess.TimeoutExpired) as failure:
                # One misbehaving target costs its round, not the run.
                result.failures.append(f"round {round_no}: {failure}")
                _log(f"  failed: {failure}")
            _log(f"  {time.monotonic() - started:.0f} s")
        if backend_proc.poll() is not None:
            raise RuntimeError("backend exited:\n" + registry.log_tail("backend"))

    for r in results:
        if r.unavailable:
            _log(f"not run: {r.label}: {r.unavailable}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    plot_note = plot_latency(results, plan.rates, args.out_dir / LATENCY_PNG)
    if plot_note:
        _log(f"no plot: {plot_note}")
    facts = machine.describe(REPO)
    raw = _save_raw(results, plan, facts)
    _log(f"raw figures of every round: {raw}")
    body = _results_body(results, plan, facts, plot_note)
    (args.out_dir / RESULTS_MD).write_text(
        "# Benchmark results\n\nMethod and caveats: [benchmarks.md](benchmarks.md).\n\n" + body
    )
    if args.update_docs:
        _update_docs(DOCS / "benchmarks.md", body)
    print(report.markdown(results, plan.rates, plan.rounds))
    _log(f"wrote {args.out_dir / RESULTS_MD} and {args.out_dir / LATENCY_PNG}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    if not {PROXY_CORE, LOAD_CORE} <= os.sched_getaffinity(0):
        raise SystemExit(f"the benchmark needs cores {PROXY_CORE} and {LOAD_CORE}")
    # The harness sleeps most of the time, but what it does must not land on the proxy's core.
    os.sched_setaffinity(0, {LOAD_CORE})
    workdir = Path(tempfile.mkdtemp(prefix="pilotfish-bench-"))
    registry = ProcessRegistry(workdir)
    # SIGINT too: a harness started in the background inherits it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(sig, _on_signal)
    signal.alarm(int(args.time_limit * 60))
    ok = False
    try:
        code = _run(args, registry, workdir)
        ok = True
        return code
    except KeyboardInterrupt:
        _log("interrupted")
        return 130
    except TimeLimitReached:
        _log(f"stopped: the run took longer than --time-limit {args.time_limit:g} min")
        return 1
    finally:
        signal.alarm(0)
        registry.stop_all()
        if ok and not args.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            _log(f"configs and logs kept in {workdir}")


if __name__ == "__main__":
    sys.exit(main())
