"""The ``pilotfish`` command: run, check-config, example, explain, demo, simulate, --version."""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib import resources

import click

from sidecar import __version__
from sidecar.config import ConfigError, load_file, plural

EXAMPLES = ("static", "consul", "dns")  # sidecar/examples/<kind>.yaml, shipped in the wheel


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
    sys.exit(run_async(lambda: serve(config, config_path)))


@main.command("check-config")
@click.argument("path", type=click.Path(dir_okay=False))
def check_config(path: str) -> None:
    """Validate a config file: exit 0 when valid, 2 with every error listed."""
    config = _load_or_exit(path)
    click.echo(f"{path}: ok ({plural(len(config.upstreams), 'upstream')})")


def _within(low: float, high: float) -> Callable[[click.Context, click.Parameter, float], float]:
    """An option check: more than ``low``, at most ``high`` (``FloatRange`` lets NaN through)."""

    def check(ctx: click.Context, param: click.Parameter, value: float) -> float:
        if not low < value <= high:
            raise click.BadParameter(
                f"must be more than {low:g} and at most {high:g}, not {value:g}"
            )
        return value

    return check


@main.command()
@click.argument("kind", type=click.Choice(EXAMPLES), default="static")
def example(kind: str) -> None:
    """Print an example config (static, consul or dns discovery) to start from."""
    click.echo(
        resources.files("sidecar").joinpath("examples", f"{kind}.yaml").read_text(), nl=False
    )


@main.command()
@click.argument("name")
def explain(name: str) -> None:
    """What an x-pilotfish-error reason or an access-log flag means, and what to check first."""
    from sidecar.troubleshooting import FLAGS, REASONS, describe
    from sidecar.troubleshooting import explain as find

    entry = find(name)
    if entry is None:
        known = ", ".join(e.name for e in (*REASONS, *FLAGS))
        raise click.BadParameter(f"unknown reason or flag {name!r}; known: {known}")
    click.echo(describe(entry), nl=False)


@main.command()
@click.option(
    "--duration",
    type=float,
    default=30.0,
    show_default=True,
    callback=_within(0, 86400),
    help="Seconds to run before stopping (at most a day; Ctrl-C stops it sooner).",
)
@click.option(
    "--rate",
    type=float,
    default=50.0,
    show_default=True,
    callback=_within(0, 1000),
    help="Requests per second sent through the sidecar (at most 1000).",
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
        click.echo(f"{exc.source}: invalid config ({plural(len(exc.errors), 'error')})", err=True)
        for line in exc.errors:
            click.echo(f"  {line}", err=True)
        sys.exit(2)
