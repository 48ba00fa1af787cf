"""Endpoint.name: what an operator calls an endpoint; host:port when discovery knows none."""

from __future__ import annotations

from discovery.model import Endpoint, EndpointSet


def test_an_endpoint_without_a_name_is_named_by_its_id() -> None:
    assert Endpoint("10.0.0.1", 80).name == "10.0.0.1:80"
    assert Endpoint("::1", 80).name == "[::1]:80"
    assert Endpoint("10.0.0.1", 80, name="") == Endpoint("10.0.0.1", 80)


def test_the_name_labels_the_endpoint_and_the_id_stays_its_identity() -> None:
    named = Endpoint("10.0.0.1", 80, name="web-1")
    assert (named.id, named.name) == ("10.0.0.1:80", "web-1")
    # a set keeps one endpoint per id, whatever it is called
    both = EndpointSet.of([Endpoint("10.0.0.1", 80, name="a"), Endpoint("10.0.0.1", 80, name="b")])
    assert [(e.id, e.name) for e in both.endpoints] == [("10.0.0.1:80", "b")]


def test_a_new_name_is_a_change_of_content() -> None:
    before = EndpointSet.of([Endpoint("10.0.0.1", 80, name="web-1")])
    after = EndpointSet.of([Endpoint("10.0.0.1", 80, name="web-one")])
    assert not after.same_content(before)
    assert after.same_content(EndpointSet.of([Endpoint("10.0.0.1", 80, name="web-one")]))
