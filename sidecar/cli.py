"""The ``pilotfish`` command: run, check-config, demo, simulate, --version."""

from __future__ import annotations

import sys

import click

from sidecar import __version__
from sidecar.config import ConfigError, load_file


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pilotfish")
def main() -> None:
    """Pilotfish: a service-mesh-lite sidecar proxy."""


@main.command()
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="YAML config file.",
)
def run(config_path: str) -> None:
    """Run the sidecar."""
    from sidecar.runtime import configure_logging, run_async, serve

    config = _load_or_exit(config_path)
    configure_logging(config.log_level)
    sys.exit(run_async(lambda: serve(config)))


@main.command("check-config")
@click.argument("path", type=click.Path(dir_okay=False))
def check_config(path: str) -> None:
    """Validate a config file: exit 0 when valid, 2 with every error listed."""
    config = _load_or_exit(path)
    click.echo(f"{path}: ok ({len(config.upstreams)} upstreams)")


@main.command()
@click.option(
    "--duration",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds to run before stopping.",
)
@click.option(
    "--rate",
    type=float,
    default=50.0,
    show_default=True,
    help="Requests per second sent through the sidecar.",
)
@click.option("--chaos", is_flag=True, help="Kill and revive a backend to show failover.")
def demo(duration: float, rate: float, chaos: bool) -> None:
    """Run three demo backends and a sidecar in one process, with a live view."""
    from sidecar.demo import run_demo

    sys.exit(run_demo(duration=duration, rate=rate, chaos=chaos))


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML config file.")
@click.option("--scenario", "scenario_path", type=click.Path(dir_okay=False), help="Scenario file.")
@click.option("--example", help="A worked scenario that ships with Pilotfish, with its config.")
@click.option("--compare", "compare_path", help="A second config, run on the same scenario.")
@click.option("--seed", type=int, help="Seed of every random draw (default: the scenario's).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Write a PNG timeline.")
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False), help="Write JSON (- for stdout)."
)
def simulate(**options: object) -> None:
    """Replay a fault scenario against a configuration, in virtual time."""
    from sidecar.simulate.command import run_command

    sys.exit(run_command(**options))  # type: ignore[arg-type]


def _load_or_exit(path: str):
    try:
        return load_file(path)
    except ConfigError as exc:
        click.echo(f"{exc.source}: invalid config ({len(exc.errors)} errors)", err=True)
        for line in exc.errors:
            click.echo(f"  {line}", err=True)
        sys.exit(2)
