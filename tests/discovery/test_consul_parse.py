"""parse_health_service: fixture-driven tables, then hypothesis for "DiscoveryError or nothing"."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from discovery.consul_parse import aggregate_status, parse_health_service
from discovery.errors import DiscoveryError
from discovery.model import EndpointSet

FIXTURES = Path(__file__).parent.parent / "fixtures" / "consul"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


HEALTH = load("health-service.json")


def entry(**changes: Any) -> dict[str, Any]:
    """The fixture's one entry with ``Service``/``Node`` fields or ``Checks`` changed."""
    item = copy.deepcopy(HEALTH[0])
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if not name:
            item[section] = value
        elif value is ...:
            del item[section][name]
        else:
            item[section][name] = value
    return item


def with_status(*statuses: str, ids: tuple[str, ...] = ()) -> dict[str, Any]:
    checks = [
        {"CheckID": ids[i] if i < len(ids) else f"c{i}", "Status": s}
        for i, s in enumerate(statuses)
    ]
    return entry(Checks=checks)


def test_the_documented_sample_gives_one_endpoint_with_every_field_kept() -> None:
    snapshot = parse_health_service(HEALTH, passing_only=True)
    (endpoint,) = snapshot.endpoints
    assert (endpoint.address, endpoint.port, endpoint.weight) == ("10.1.10.12", 8000, 10)
    assert endpoint.tags == ("primary",)
    assert dict(endpoint.meta) == {"redis_version": "4.0"}
    assert endpoint.priority == 0
    assert snapshot.source == "consul"


@pytest.mark.parametrize(
    ("changes", "name"),
    [
        pytest.param({"Service__ID": "redis-foobar-8000"}, "redis-foobar-8000", id="its ID"),
        pytest.param({}, "foobar", id="the node when the ID is the service's name"),
        pytest.param({"Service__ID": ...}, "foobar", id="the node when there is no ID"),
        pytest.param({"Service__ID": "", "Node__Node": ...}, "10.1.10.12:8000", id="host:port"),
    ],
)
def test_an_instance_is_named_by_its_service_id_or_else_its_node(
    changes: dict[str, Any], name: str
) -> None:
    (endpoint,) = parse_health_service([entry(**changes)], passing_only=True).endpoints
    assert endpoint.name == name
    assert endpoint.id == "10.1.10.12:8000"  # the identity stays host:port


def test_a_renamed_instance_is_a_changed_snapshot() -> None:
    before = parse_health_service([entry(Service__ID="redis-1")], passing_only=True)
    after = parse_health_service([entry(Service__ID="redis-2")], passing_only=True)
    assert not after.same_content(before)


@pytest.mark.parametrize(
    ("payload", "passing_only", "expected"),
    [
        pytest.param([], True, [], id="zero instances is a valid empty snapshot"),
        pytest.param(
            [entry(Service__Address="")],
            True,
            [("10.1.10.12", 8000, 10)],
            id="empty Service.Address falls back to Node.Address",
        ),
        pytest.param(
            [entry(Service__Address="", Node__Address="10.9.9.9")],
            True,
            [("10.9.9.9", 8000, 10)],
            id="the fallback really reads Node.Address",
        ),
        pytest.param(
            [entry(Service__Address=...)],
            True,
            [("10.1.10.12", 8000, 10)],
            id="absent Service.Address falls back too",
        ),
        pytest.param(
            [with_status("passing", "warning")], True, [], id="warning dropped when passing only"
        ),
        pytest.param(
            [with_status("passing", "warning")],
            False,
            [("10.1.10.12", 8000, 1)],
            id="warning kept with Weights.Warning otherwise",
        ),
        pytest.param(
            [with_status("warning", "critical")], False, [], id="any critical is critical"
        ),
        pytest.param(
            [with_status("passing", ids=("_node_maintenance",))],
            False,
            [],
            id="node maintenance counts as critical",
        ),
        pytest.param(
            [with_status("passing", ids=("_service_maintenance:redis",))],
            False,
            [],
            id="service maintenance counts as critical",
        ),
        pytest.param([with_status("maintenance")], False, [], id="maintenance status is critical"),
        pytest.param([with_status("bogus")], False, [], id="an unknown status is critical"),
        pytest.param(
            [entry(Checks=[])], True, [("10.1.10.12", 8000, 10)], id="no checks is passing"
        ),
        pytest.param([entry(Checks=None)], True, [("10.1.10.12", 8000, 10)], id="null checks too"),
        pytest.param(
            [entry(Service__Weights=...)],
            True,
            [("10.1.10.12", 8000, 1)],
            id="absent Weights default to 1",
        ),
        pytest.param(
            [entry(Service__Weights={"Passing": 0, "Warning": 1})],
            True,
            [],
            id="weight 0 gets no traffic",
        ),
        pytest.param(
            [entry(Service__Port=...)], True, [], id="no port (omitted 0) cannot be dialled"
        ),
        pytest.param(
            [entry(Service__Tags=None, Service__Meta=None)],
            True,
            [("10.1.10.12", 8000, 10)],
            id="null tags and meta are empty",
        ),
        pytest.param(
            [
                entry(Service__ID="a", Service__Address="10.0.0.1"),
                entry(Service__ID="b", Service__Address="10.0.0.2", Service__Port=9000),
            ],
            True,
            [("10.0.0.1", 8000, 10), ("10.0.0.2", 9000, 10)],
            id="several instances",
        ),
    ],
)
def test_health_entries_become_endpoints(
    payload: object, passing_only: bool, expected: list[tuple[str, int, int]]
) -> None:
    snapshot = parse_health_service(payload, passing_only=passing_only)
    assert [(e.address, e.port, e.weight) for e in snapshot.endpoints] == expected


def test_keys_are_matched_case_insensitively() -> None:
    lowered = [{"node": {"address": "10.0.0.3"}, "service": {"port": 81}, "checks": []}]
    (endpoint,) = parse_health_service(lowered, passing_only=True).endpoints
    assert endpoint.id == "10.0.0.3:81"


@pytest.mark.parametrize(
    ("tags", "expected"),
    [((), 3), (("v1",), 2), (("v1", "canary"), 1), (("v2",), 0)],
)
def test_every_requested_tag_must_be_present(tags: tuple[str, ...], expected: int) -> None:
    payload = [
        entry(Service__ID="a", Service__Address="10.0.0.1", Service__Tags=["v1", "canary"]),
        entry(Service__ID="b", Service__Address="10.0.0.2", Service__Tags=["v1"]),
        entry(Service__ID="c", Service__Address="10.0.0.3", Service__Tags=[]),
    ]
    assert len(parse_health_service(payload, passing_only=True, tags=tags)) == expected


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"Node": {}}, "expected a JSON array"),
        (None, "got null"),
        ([1], "health/service[0]: expected an object"),
        ([entry(Node=...)], "health/service[0].Node: expected an object"),
        ([entry(Service="redis")], "health/service[0].Service: expected an object, got a string"),
        ([entry(Service__Port="8000")], "Service.Port: expected an integer"),
        ([entry(Service__Port=True)], "Service.Port: expected an integer, got a boolean"),
        ([entry(Service__Port=8000.0)], "Service.Port: expected an integer, got a number"),
        ([entry(Service__Port=70000)], "70000 is outside 0..65535"),
        ([entry(Service__Tags="primary")], "Service.Tags: expected an array of strings"),
        ([entry(Service__Tags=[1])], "Service.Tags: expected an array of strings"),
        ([entry(Service__Meta={"k": 1})], "Service.Meta: expected an object of strings"),
        ([entry(Service__Address=5)], "Service.Address: expected a string"),
        ([entry(Service__Address="", Node__Address="")], "neither Service.Address nor Node"),
        ([entry(Checks={"Status": "passing"})], "Checks: expected an array"),
        ([entry(Checks=[{"CheckID": "x"}])], "Checks[0].Status is missing"),
        ([entry(Checks=[{"Status": 1}])], "Checks[0].Status: expected a string"),
        ([entry(Service__Weights={"Passing": -1})], "Weights.Passing: -1 is outside"),
        ([entry(Service__Weights=[10, 1])], "Weights: expected an object"),
        (load("agent-health-service-name.json"), "health/service[0].Node: expected an object"),
    ],
)
def test_malformed_input_is_a_discovery_error_naming_the_field(
    payload: object, message: str
) -> None:
    with pytest.raises(DiscoveryError, match=message.replace(".", r"\.").replace("[", r"\[")):
        parse_health_service(payload, passing_only=False)


@pytest.mark.parametrize(
    ("checks", "expected"),
    [
        ([], "passing"),
        ([("a", "passing"), ("b", "passing")], "passing"),
        ([("a", "passing"), ("b", "warning")], "warning"),
        ([("a", "warning"), ("b", "critical")], "critical"),
        ([("a", "critical"), ("b", "warning")], "critical"),
        ([("_node_maintenance", "passing")], "critical"),
        ([("_service_maintenance:web-1", "warning")], "critical"),
        ([("a", "maintenance")], "critical"),
        ([("a", "")], "critical"),
    ],
)
def test_aggregate_status(checks: list[tuple[str, str]], expected: str) -> None:
    assert aggregate_status(checks) == expected


# -- hypothesis: whatever the input, an EndpointSet or a DiscoveryError --------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=25,
)
# keys Consul really uses, so random objects often reach the deeper rules
consul_keys = st.sampled_from(
    [
        "Node",
        "Service",
        "Checks",
        "Address",
        "Port",
        "Tags",
        "Meta",
        "Weights",
        "Passing",
        "Warning",
        "Status",
        "CheckID",
        "ID",
    ]
)
consulish = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(consul_keys, inner, max_size=5),
    max_leaves=30,
)


def assert_parses_or_raises_discovery_error(payload: object, passing_only: bool) -> None:
    try:
        result = parse_health_service(payload, passing_only=passing_only, tags=("primary",))
    except DiscoveryError as exc:
        assert str(exc)
    else:
        assert isinstance(result, EndpointSet)


@settings(max_examples=200, deadline=None)
@given(payload=json_values | consulish, passing_only=st.booleans())
def test_random_json_never_raises_anything_but_discovery_error(
    payload: object, passing_only: bool
) -> None:
    assert_parses_or_raises_discovery_error(payload, passing_only)


def paths(value: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths(child, (*prefix, index))
    return found


FIXTURE_PATHS = paths(HEALTH)[1:]


@settings(max_examples=200, deadline=None)
@given(
    path=st.sampled_from(FIXTURE_PATHS),
    replacement=json_values,
    delete=st.booleans(),
    passing_only=st.booleans(),
)
def test_mutated_fixture_never_raises_anything_but_discovery_error(
    path: tuple[Any, ...], replacement: object, delete: bool, passing_only: bool
) -> None:
    payload = copy.deepcopy(HEALTH)
    parent = payload
    for step in path[:-1]:
        parent = parent[step]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    assert_parses_or_raises_discovery_error(payload, passing_only)
