"""Scenario files: every mistake is reported by its path, with a did-you-mean, never a
traceback; and every worked example that ships is valid against its own config."""

from __future__ import annotations

import pytest

from sidecar.config import load_text
from sidecar.simulate.load import (
    ScenarioError,
    check_against,
    example_dir,
    example_names,
    load_scenario_text,
    targets,
)
from tests.simulate.support import config


def errors_of(text: str) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        load_scenario_text(text)
    return info.value.errors


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "duraton: 1m\nload: {rate: 1}\nupstreams: {api: {endpoints: [a]}}",
            ["duraton: unknown key; did you mean 'duration'?", "duration: required"],
        ),
        (
            "duration: 1m\nload: {rate: -1}\nupstreams: {api: {endpoints: [a], "
            "faults: [{kind: refues}]}}",
            [
                "load.rate: must be >= 0, got -1.0",
                "upstreams.api.faults[0].kind: unknown value 'refues'; did you mean 'refuse'? "
                "(expected one of: errors, refuse, reset, hang, slow, gone, back)",
            ],
        ),
        (
            "duration: 1m\nload: {rate: 1}\nupstreams: {api: {endpoints: [a, b], "
            "faults: [{endpoint: bb, kind: refuse, at: 2m}, {endpoints: [a, c], kind: hang}]}}",
            [
                "upstreams.api.faults[0].endpoint: unknown endpoint 'bb'; did you mean 'b'?",
                "upstreams.api.faults[0].at: 120s is not before the end of the run (60s)",
                "upstreams.api.faults[1].endpoints[1]: unknown endpoint 'c' (known: a, b)",
            ],
        ),
        (
            "duration: 1m\nupstreams: {api: {endpoints: [{nmae: a}]}}",
            [
                "upstreams.api.endpoints[0].nmae: unknown key; did you mean 'name'?",
                "upstreams.api.endpoints[0].name: required",
            ],
        ),
        (
            "duration: 1m\nupstreams: {api: {endpoints: [a, b, a]}}",
            [
                "upstreams.api.endpoints[2].name: 'a' is already endpoints[0]",
            ],
        ),
        (
            "duration: 1m\nupstreams: {api: {endpoints: [a]}}",
            ["upstreams.api.load: required when the scenario has no top-level load"],
        ),
        (
            "duration: 1m\nload: {rate: 1}\nupstreams: {api: {endpoints: [a], latency: "
            "{p50: 20ms, p99: 10ms}}}",
            ["upstreams.api.latency: need p50 <= p99, got p50=0.02s p99=0.01s"],
        ),
        (
            "duration: 1m\nload: {rate: 1}\nupstreams: {api: {endpoints: [a], faults: "
            "[{kind: slow}, {kind: errors, factor: 2}, {kind: back, for: 1s}, "
            "{kind: hang, every: 10s}, {kind: refuse, status: 500}]}}",
            [
                "upstreams.api.faults[0]: kind slow needs factor (how many times slower)",
                "upstreams.api.faults[1]: factor is only for kind slow, not errors",
                "upstreams.api.faults[2]: kind back is a moment: it takes no 'for' or 'every'",
                "upstreams.api.faults[3]: every needs a 'for' shorter than itself",
                "upstreams.api.faults[4]: status is only for kind errors, not refuse",
            ],
        ),
        (
            "duration: 1m\nload: {phases: [{for: 1m, rate: 1, to: 3}], mix: [{method: get}], "
            "keys: {count: 0, distribution: zip}}\nupstreams: {api: {endpoints: [a], "
            "discovery: [{kind: unavailable, endpoint: a}, {kind: ad}]}}",
            [
                "load.phases[0]: a phase has a rate, or a ramp with from and to",
                "load.mix[0].method: expected an HTTP method like GET, got 'get'",
                "load.keys.count: must be in 1..1000000, got 0",
                "load.keys.distribution: unknown value 'zip'; did you mean 'zipf'? "
                "(expected one of: uniform, zipf)",
                "upstreams.api.discovery[0]: unavailable concerns the whole source: it names "
                "no endpoint",
                "upstreams.api.discovery[1].kind: unknown value 'ad'; did you mean 'add'? "
                "(expected one of: add, remove, unavailable)",
            ],
        ),
        (
            "duration: 0s\nload: {rate: 1, bursts: [{at: 1s, rate: 5}]}\n"
            "upstreams: {api: {endpoints: [a], latency: fast}}",
            [
                "duration: must be more than 0 and at most 30 days, got 0s",
                "load.bursts[0].for: required",
                "upstreams.api.latency.fixed: expected a duration like '250ms', '5s' or '1m', "
                "got 'fast'",
            ],
        ),
        ("duration: [1\n", ["invalid YAML at line 2, column 1: did not find expected ',' or ']'"]),
        ("- a\n", ["the file must hold a mapping with duration and upstreams"]),
    ],
)
def test_every_mistake_is_named_by_its_path(text, expected):
    assert errors_of(text) == expected


def test_an_upstream_the_config_lacks_is_named_with_a_did_you_mean():
    scenario = load_scenario_text(
        "duration: 1m\nload: {rate: 1}\nupstreams: {apj: {endpoints: [a]}}"
    )
    with pytest.raises(ScenarioError) as info:
        check_against(scenario, config())
    assert info.value.errors == [
        "upstreams.apj: no upstream of that name in the config; did you mean 'api'?"
    ]


def test_targets_are_one_endpoint_a_list_a_leading_fraction_or_all():
    scenario = load_scenario_text(
        """
        duration: 1m
        load: {rate: 1}
        upstreams:
          api:
            endpoints: [a, b, c, d]
            faults:
              - {kind: refuse, endpoint: c}
              - {kind: refuse, endpoints: [d, a]}
              - {kind: refuse, fraction: 0.34}
              - {kind: refuse, fraction: 0.5}
              - {kind: refuse}
        """
    )
    up = scenario.upstreams["api"]
    assert [targets(f, up) for f in up.faults] == [
        ("c",),
        ("a", "d"),
        ("a",),
        ("a", "b"),
        ("a", "b", "c", "d"),
    ]


@pytest.mark.parametrize("name", example_names())
def test_every_shipped_example_is_valid_against_the_configs_it_ships_with(name):
    folder = example_dir(name)
    scenario = load_scenario_text(folder.joinpath("scenario.yaml").read_text(encoding="utf-8"))
    configs = [
        p for p in folder.iterdir() if p.name.endswith(".yaml") and p.name != "scenario.yaml"
    ]
    assert any(p.name == "pilotfish.yaml" for p in configs)
    for path in configs:
        check_against(scenario, load_text(path.read_text(encoding="utf-8"), environ={}))
    assert scenario.description


def test_an_unknown_example_is_named_with_a_did_you_mean():
    with pytest.raises(ScenarioError) as info:
        example_dir("flaping-endpoint")
    assert info.value.errors == [
        "--example: no example named 'flaping-endpoint'; did you mean 'flapping-endpoint'?"
    ]
