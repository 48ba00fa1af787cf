"""Shared pieces of the simulation tests: a config with one upstream ``api``, a scenario
from YAML text, and a run's summary of that upstream."""

from __future__ import annotations

from typing import Any

import yaml

from sidecar.config import load_text
from sidecar.config.schema import Config
from sidecar.simulate.driver import simulate
from sidecar.simulate.load import load_scenario_text
from sidecar.simulate.report import to_json
from sidecar.simulate.scenario import Scenario

UPSTREAM = "api"


def config(**policies: Any) -> Config:
    """A config whose one upstream ``api`` has ``policies`` (its discovery is the scenario's)."""
    doc = {
        "service": {"name": "test", "port": 1},
        "upstreams": [
            {
                "name": UPSTREAM,
                "listen": "127.0.0.1:0",
                "discovery": {"static": ["10.0.0.1:80"]},
                **policies,
            }
        ],
    }
    return load_text(yaml.safe_dump(doc), environ={})


def scenario(text: str) -> Scenario:
    return load_scenario_text(text)


def run(cfg: Config, text: str, seed: int | None = None) -> dict[str, Any]:
    """The JSON summary of upstream ``api`` after running scenario ``text`` on ``cfg``."""
    return to_json(simulate(cfg, scenario(text), seed=seed))["upstreams"][UPSTREAM]


# Only what a test names acts: no ejection, no breaker, no retries.
BARE: dict[str, Any] = {
    "retries": {"attempts": 0},
    "outlier_detection": None,
    "circuit_breakers": {"endpoint": None},
}
