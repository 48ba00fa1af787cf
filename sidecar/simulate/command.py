"""``pilotfish simulate``: read the inputs, run, print the table, write JSON and PNG.

Exit codes: 0 after a run; 2 when an input is wrong (every error listed by path, as
``check-config`` lists a config's) or ``--plot`` is asked for without matplotlib. How long
the run took in wall time goes to stderr, never into the JSON, which is the same on every
run with the same inputs and seed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass

import click

from sidecar.config import ConfigError, load_file, load_text
from sidecar.config.schema import Config
from sidecar.config.units import format_duration
from sidecar.simulate import plot, report
from sidecar.simulate.driver import Result, simulate
from sidecar.simulate.load import (
    ScenarioError,
    check_against,
    example_dir,
    load_scenario_file,
    load_scenario_text,
)
from sidecar.simulate.scenario import Scenario


@dataclass(frozen=True)
class Inputs:
    scenario: Scenario
    configs: list[tuple[str, Config]]  # (label, config): one, or two with --compare


def run_command(
    *,
    config_path: str | None,
    scenario_path: str | None,
    example: str | None,
    compare_path: str | None,
    seed: int | None,
    plot_path: str | None,
    json_path: str | None,
) -> int:
    try:
        if plot_path:
            plot.require_matplotlib()
        inputs = _inputs(config_path, scenario_path, example, compare_path)
    except (ConfigError, ScenarioError) as exc:
        what = "config" if isinstance(exc, ConfigError) else "scenario"
        count = len(exc.errors)
        click.echo(f"{exc.source}: invalid {what} ({count} error{'s' * (count != 1)})", err=True)
        for line in exc.errors:
            click.echo(f"  {line}", err=True)
        return 2
    except (plot.PlotUnavailable, click.UsageError) as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    started = time.perf_counter()
    results: list[tuple[str, Result]] = [
        (label, simulate(config, inputs.scenario, seed=seed)) for label, config in inputs.configs
    ]
    elapsed = time.perf_counter() - started
    requests = sum(run.stats.requests for _, result in results for run in result.upstreams.values())
    runs = [(label, report.to_json(result)) for label, result in results]
    if json_path != "-":
        if len(results) == 1:
            click.echo(report.table(results[0][1]))
        else:
            (la, a), (lb, b) = results
            click.echo(report.compare(a, b, (la, lb)))
    if json_path:
        _write_json(json_path, runs)
    if plot_path:
        plot.render(runs, plot_path)
    duration = format_duration(inputs.scenario.duration)
    click.echo(
        f"simulated {duration} of traffic ({requests:,} requests, {len(results)} "
        f"run{'s' * (len(results) != 1)}) in {elapsed:.1f} s",
        err=True,
    )
    return 0


def _write_json(path: str, runs: list[tuple[str, dict[str, object]]]) -> None:
    doc = [{"config": label, **data} for label, data in runs]
    text = json.dumps(doc[0] if len(doc) == 1 else {"runs": doc}, indent=2, ensure_ascii=False)
    if path == "-":
        sys.stdout.write(text + "\n")
    else:
        with open(path, "w", encoding="utf-8") as out:
            out.write(text + "\n")


def _inputs(
    config_path: str | None,
    scenario_path: str | None,
    example: str | None,
    compare_path: str | None,
) -> Inputs:
    if (scenario_path is None) == (example is None):
        raise click.UsageError("give one of --scenario FILE or --example NAME")
    configs: list[tuple[str, Config]] = []
    if example is not None:
        folder = example_dir(example)
        scenario = load_scenario_text(
            folder.joinpath("scenario.yaml").read_text(encoding="utf-8"),
            source=f"{example}/scenario.yaml",
        )
        if config_path is None:
            label = f"{example}/pilotfish.yaml"
            text = folder.joinpath("pilotfish.yaml").read_text(encoding="utf-8")
            configs.append((label, load_text(text, source=label)))
    else:
        assert scenario_path is not None
        if config_path is None:
            raise click.UsageError("--config is required with --scenario")
        scenario = load_scenario_file(scenario_path)
    if config_path is not None:
        configs.append((config_path, load_file(config_path)))
    if compare_path is not None:
        configs.append(_compare_config(compare_path, example))
    for label, config in configs:
        check_against(scenario, config, source=f"scenario (against {label})")
    return Inputs(scenario, configs)


def _compare_config(path: str, example: str | None) -> tuple[str, Config]:
    """``--compare FILE``; with ``--example``, a bare name (``tuned``) is the example's own
    ``tuned.yaml`` when no such file is here."""
    if example is not None and os.sep not in path and not os.path.exists(path):
        shipped = example_dir(example).joinpath(f"{path.removesuffix('.yaml')}.yaml")
        if shipped.is_file():
            label = f"{example}/{shipped.name}"
            return label, load_text(shipped.read_text(encoding="utf-8"), source=label)
    return path, load_file(path)
