"""parse_srv_answer and friends: tables from the Consul DNS fixture, then hypothesis."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from discovery.dns_parse import (
    TYPE_A,
    TYPE_AAAA,
    TYPE_SRV,
    answer_ttl,
    parse_srv_answer,
    refresh_delay,
    unresolved_targets,
)
from discovery.errors import DiscoveryError
from discovery.model import EndpointSet

FIXTURE = json.loads(
    (Path(__file__).parent.parent / "fixtures" / "consul" / "dns-srv-service.json").read_text()
)


@dataclass
class Srv:
    priority: int
    weight: int
    port: int
    target: str


@dataclass
class Addr:
    addr: str


@dataclass
class Record:
    """Shaped like pycares.DNSRecord."""

    name: str
    type: int
    ttl: int
    data: Any
    record_class: int = 1


def srv(target: str, port: int = 80, priority: int = 1, weight: int = 1, ttl: int = 0) -> Record:
    return Record("_web._tcp.service.consul", TYPE_SRV, ttl, Srv(priority, weight, port, target))


def a(name: str, addr: str, ttl: int = 0) -> Record:
    return Record(name, TYPE_A, ttl, Addr(addr))


def aaaa(name: str, addr: str, ttl: int = 0) -> Record:
    return Record(name, TYPE_AAAA, ttl, Addr(addr))


def from_fixture(section: list[dict[str, Any]]) -> list[Record]:
    records = []
    for r in section:
        if r["type"] == "SRV":
            data: Any = Srv(r["priority"], r["weight"], r["port"], r["target"])
            records.append(Record(r["name"], TYPE_SRV, r["ttl"], data))
        else:
            records.append(Record(r["name"], TYPE_A, r["ttl"], Addr(r["address"])))
    return records


@pytest.mark.parametrize(
    ("lookup", "expected"),
    [
        ("standard_lookup", ["10.1.10.12:8300"]),
        ("tag_lookup", ["10.1.10.12:5432"]),
        ("rfc2782_lookup", ["10.1.11.20:5672"]),
    ],
)
def test_consul_dns_answers(lookup: str, expected: list[str]) -> None:
    case = FIXTURE[lookup]
    answer, additional = from_fixture(case["answer"]), from_fixture(case["additional"])
    snapshot = parse_srv_answer(answer, additional)
    assert [e.id for e in snapshot.endpoints] == expected
    assert (snapshot.endpoints[0].priority, snapshot.endpoints[0].weight) == (1, 1)
    assert unresolved_targets(answer, additional) == []
    assert answer_ttl(answer, additional) == 0  # Consul's default TTL


def test_priorities_and_weights_are_kept_and_weight_zero_becomes_one() -> None:
    answer = [srv("a.node", 80, 1, 10), srv("b.node", 81, 1, 0), srv("c.node", 82, 2, 5)]
    additional = [a("a.node", "10.0.0.1"), a("b.node", "10.0.0.2"), a("c.node", "10.0.0.3")]
    snapshot = parse_srv_answer(answer, additional)
    assert [(e.id, e.priority, e.weight) for e in snapshot.endpoints] == [
        ("10.0.0.1:80", 1, 10),
        ("10.0.0.2:81", 1, 1),
        ("10.0.0.3:82", 2, 5),
    ]
    assert snapshot.source == "dns-srv"
    assert snapshot.endpoints[0].meta["srv_target"] == "a.node"


def test_an_endpoint_is_named_by_its_srv_target() -> None:
    answer = [srv("A.Node.", 80), srv("10.0.0.9", 81)]
    additional = [a("a.node", "10.0.0.1"), a("a.node", "10.0.0.2")]
    snapshot = parse_srv_answer(answer, additional)
    assert [(e.id, e.name) for e in snapshot.endpoints] == [
        ("10.0.0.1:80", "a.node"),
        ("10.0.0.2:80", "a.node"),  # every address of a target shares its name
        ("10.0.0.9:81", "10.0.0.9"),
    ]


@pytest.mark.parametrize(
    ("answer", "additional", "expected"),
    [
        pytest.param(
            [srv("a.node.")], [a("A.NODE", "10.0.0.1")], ["10.0.0.1:80"],
            id="names compare without case and trailing dot",
        ),
        pytest.param(
            [srv("a.node")], [a("a.node", "10.0.0.1"), aaaa("a.node", "2001:db8::1")],
            ["10.0.0.1:80", "[2001:db8::1]:80"], id="one endpoint per address",
        ),
        pytest.param([srv(".")], [], [], id="target '.' means not available: empty snapshot"),
        pytest.param(
            [srv("."), srv("a.node")], [a("a.node", "10.0.0.1")], ["10.0.0.1:80"],
            id="'.' next to a real target",
        ),
        pytest.param(
            [srv("a.node"), srv("gone.node")], [a("a.node", "10.0.0.1")], ["10.0.0.1:80"],
            id="a target without address is left out",
        ),
        pytest.param([srv("192.0.2.10")], [], ["192.0.2.10:80"], id="an IP literal target"),
        pytest.param(
            [srv("a.node", port=0), srv("b.node")],
            [a("a.node", "10.0.0.1"), a("b.node", "10.0.0.2")], ["10.0.0.2:80"],
            id="port 0 cannot be dialled",
        ),
        pytest.param(
            [Record("x", 5, 0, None), srv("a.node")],
            [a("a.node", "10.0.0.1"), Record("a.node", 16, 0, None)],
            ["10.0.0.1:80"], id="other record types are skipped",
        ),
    ],
)  # fmt: skip
def test_srv_tables(answer: list[Record], additional: list[Record], expected: list[str]) -> None:
    assert [e.id for e in parse_srv_answer(answer, additional).endpoints] == expected


@pytest.mark.parametrize(
    ("answer", "additional", "message"),
    [
        ([], [], "holds no SRV record"),
        ([Record("x", 5, 0, None)], [], "holds no SRV record"),
        ([srv("gone.node")], [], "no SRV target resolved"),
        ("not a list", [], "expected a list of records"),
        ([srv("a.node")], None, "expected a list of records"),
        ([Record("x", TYPE_SRV, 0, Srv(1, 1, 99999, "a"))], [], "port: 99999 is outside"),
        ([Record("x", TYPE_SRV, 0, Srv(1, -1, 80, "a"))], [], "weight: -1 is outside"),
        ([Record("x", TYPE_SRV, 0, Srv(1, 1, 80, None))], [], "target: expected a string"),  # type: ignore[arg-type]
        ([Record("x", TYPE_SRV, -5, Srv(1, 1, 80, "a"))], [], "ttl: -5 is outside"),
        ([Record("x", TYPE_SRV, 0, "1 1 80 a")], [], "priority: expected an integer"),
        ([srv("a.node")], [a("a.node", "not-an-ip")], "'not-an-ip' is not an IP address"),
        ([srv("a.node")], [a("a.node", "2001:db8::1")], "does not fit record type 1"),
        ([srv("a.node")], [aaaa("a.node", "10.0.0.1")], "does not fit record type 28"),
    ],
)  # fmt: skip
def test_malformed_answers_are_discovery_errors(answer: Any, additional: Any, message: str) -> None:
    with pytest.raises(DiscoveryError, match=message):
        parse_srv_answer(answer, additional)


def test_unresolved_targets_lists_each_name_once() -> None:
    answer = [srv("a.node"), srv("b.node", 81), srv("b.node", 82), srv("."), srv("10.0.0.9")]
    assert unresolved_targets(answer, [a("a.node", "10.0.0.1")]) == ["b.node"]


def test_ttl_is_the_smallest_among_the_records_used() -> None:
    answer = [srv("a.node", ttl=30), srv("b.node", ttl=20)]
    additional = [a("a.node", "10.0.0.1", ttl=5), a("unrelated", "10.0.0.2", ttl=1)]
    assert answer_ttl(answer, additional) == 5


@pytest.mark.parametrize(
    ("ttl", "expected"), [(0, 1.0), (1, 1.0), (30, 30.0), (60, 60.0), (3600, 60.0)]
)
def test_refresh_delay_clamps_the_ttl(ttl: int, expected: float) -> None:
    assert refresh_delay(ttl, 1.0, 60.0) == expected


# -- hypothesis -------------------------------------------------------------------------------

anything = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
names = st.sampled_from(["a.node", "A.node.", "b.node", ".", "", "10.0.0.1", "::1"]) | st.text(
    max_size=10
)
ints = st.integers(min_value=-2, max_value=70000) | anything
records = st.builds(
    Record,
    name=names | anything,
    type=st.sampled_from([TYPE_A, TYPE_AAAA, TYPE_SRV, 5]) | ints,
    ttl=ints,
    data=st.builds(Srv, priority=ints, weight=ints, port=ints, target=names | anything)
    | st.builds(Addr, addr=st.sampled_from(["10.0.0.1", "::1", "x"]) | anything)
    | anything,
)
sections = st.lists(records, max_size=5) | anything


@settings(max_examples=300, deadline=None)
@given(answer=sections, additional=sections)
def test_random_records_never_raise_anything_but_discovery_error(
    answer: object, additional: object
) -> None:
    for parse in (parse_srv_answer, unresolved_targets, answer_ttl):
        try:
            result = parse(answer, additional)
        except DiscoveryError as exc:
            assert str(exc)
        else:
            assert isinstance(result, EndpointSet | list | int)
