"""Reading a scenario: YAML text → ``Scenario``, then checked against the config it runs on.

Every error is collected and raised together as one ``ScenarioError`` whose lines each name
a path (``upstreams.api.faults[0].endpoint: unknown endpoint 'c'; did you mean 'b'?``), the
way a config's errors are reported. Nothing here raises anything else for bad input.

Worked scenarios ship in ``examples/<name>/``: ``scenario.yaml``, the ``pilotfish.yaml`` it
runs on by default, and other configurations to compare with it.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import yaml

from sidecar.config.build import Builder
from sidecar.config.schema import Config
from sidecar.simulate.scenario import DiscoverySpec, FaultSpec, Scenario, Target, UpstreamSpec

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ScenarioError(Exception):
    def __init__(self, errors: list[str], source: str = "scenario") -> None:
        self.errors = errors
        self.source = source
        super().__init__("\n".join(errors))


def load_scenario_file(path: str | os.PathLike[str]) -> Scenario:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ScenarioError([f"cannot read {path}: {reason}"], str(path)) from None
    return load_scenario_text(text, source=str(path))


def load_scenario_text(text: str, source: str = "scenario") -> Scenario:
    try:
        raw = yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ScenarioError([f"invalid YAML{where}: {problem}"], source) from None
    if not isinstance(raw, dict):
        raise ScenarioError(["the file must hold a mapping with duration and upstreams"], source)
    builder = Builder()
    scenario = builder.build(Scenario, raw, "")
    errors = list(builder.errors)
    if scenario is not None:
        errors.extend(_cross_check(scenario))
    if errors:
        raise ScenarioError(errors, source)
    assert scenario is not None
    return scenario


def check_against(scenario: Scenario, config: Config, source: str = "scenario") -> None:
    """Raise ``ScenarioError`` unless every upstream the scenario names is in ``config``."""
    known = [up.name for up in config.upstreams]
    errors = [
        f"upstreams.{name}: no upstream of that name in the config{_did_you_mean(name, known)}"
        for name in scenario.upstreams
        if name not in known
    ]
    if errors:
        raise ScenarioError(errors, source)


def _cross_check(scenario: Scenario) -> list[str]:
    errors: list[str] = []
    end = scenario.duration
    for name, up in scenario.upstreams.items():
        path = f"upstreams.{name}"
        if up.load is None and scenario.load is None:
            errors.append(f"{path}.load: required when the scenario has no top-level load")
        names = [ep.name for ep in up.endpoints]
        events: Iterable[tuple[str, FaultSpec | DiscoverySpec]] = [
            *((f"{path}.faults[{i}]", f) for i, f in enumerate(up.faults)),
            *((f"{path}.discovery[{i}]", d) for i, d in enumerate(up.discovery)),
        ]
        for where, event in events:
            errors.extend(_check_target(event, names, where))
            if event.at >= end:
                errors.append(
                    f"{where}.at: {event.at:g}s is not before the end of the run ({end:g}s)"
                )
        load = up.load or scenario.load
        for i, burst in enumerate(load.bursts if load else ()):
            if burst.at >= end:
                where = f"{path + '.' if up.load else ''}load.bursts[{i}].at"
                errors.append(f"{where}: {burst.at:g}s is not before the end of the run ({end:g}s)")
    return errors


def _check_target(target: Target, names: list[str], path: str) -> list[str]:
    if target.endpoint is not None and target.endpoint not in names:
        hint = _did_you_mean(target.endpoint, names)
        return [f"{path}.endpoint: unknown endpoint {target.endpoint!r}{hint}"]
    return [
        f"{path}.endpoints[{i}]: unknown endpoint {name!r}{_did_you_mean(name, names)}"
        for i, name in enumerate(target.endpoints or ())
        if name not in names
    ]


def targets(target: Target, up: UpstreamSpec) -> tuple[str, ...]:
    """Names of the endpoints ``target`` touches, in the order the fleet lists them."""
    names = tuple(ep.name for ep in up.endpoints)
    if target.endpoint is not None:
        return (target.endpoint,)
    if target.endpoints is not None:
        return tuple(n for n in names if n in target.endpoints)
    if target.fraction is not None:
        # Round half up, at least one: a third of three endpoints is one of them.
        count = max(1, int(target.fraction * len(names) + 0.5))
        return names[:count]
    return names


def _did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f" (known: {', '.join(known)})" if known else ""


# -- worked examples ------------------------------------------------------------------


def _examples() -> Traversable:
    return resources.files("sidecar.simulate").joinpath("examples")


def example_names() -> list[str]:
    return sorted(p.name for p in _examples().iterdir() if p.is_dir())


def example_dir(name: str) -> Traversable:
    """The folder of the worked example ``name``; ``ScenarioError`` when there is none."""
    names = example_names()
    if name not in names:
        raise ScenarioError(
            [f"--example: no example named {name!r}{_did_you_mean(name, names)}"], "--example"
        )
    return _examples().joinpath(name)
