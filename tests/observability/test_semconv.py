"""The semantic-convention rules, table by table, without a network."""

from __future__ import annotations

import pytest

from sidecar.telemetry import semconv
from sidecar.telemetry.metrics import code_class
from sidecar.telemetry.span_export import build_sampler


@pytest.mark.parametrize(
    ("method", "name", "attrs"),
    [
        ("GET", "GET", {"http.request.method": "GET"}),
        ("PATCH", "PATCH", {"http.request.method": "PATCH"}),
        (
            "PURGE",
            "HTTP",
            {"http.request.method": "_OTHER", "http.request.method_original": "PURGE"},
        ),
    ],
)
def test_method_and_span_name(method, name, attrs):
    assert semconv.span_name(method) == name
    got = semconv.client_attributes(
        method=method,
        address="10.0.0.1",
        port=80,
        path="/",
        attempt=1,
        cluster="c",
        endpoint="10.0.0.1:80",
        balancer="random",
    )
    assert {k: got[k] for k in attrs} == attrs


@pytest.mark.parametrize(
    ("status", "error", "server", "client"),
    [
        (200, None, None, None),
        (304, None, None, None),
        (404, None, None, "404"),
        (499, None, None, "499"),
        (500, None, "500", "500"),
        (503, "no_healthy_upstream", "503", "503"),
        (0, "downstream_disconnect", "downstream_disconnect", None),
    ],
)
def test_error_type_server_versus_client(status, error, server, client):
    assert semconv.server_error_type(status, error) == server
    if status:
        assert semconv.client_error_type(status, None) == client


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("connect_failure", "connect_failure"),
        ("timeout", "timeout"),
        (None, "_OTHER"),
    ],
)
def test_error_type_of_an_attempt_without_response(error, expected):
    assert semconv.client_error_type(None, error) == expected


@pytest.mark.parametrize(("attempt", "resend"), [(1, None), (2, 1), (3, 2)])
def test_resend_count_is_attempt_minus_one(attempt, resend):
    attrs = semconv.client_attributes(
        method="GET",
        address="10.0.0.1",
        port=8080,
        path="/a?b=1",
        attempt=attempt,
        cluster="api",
        endpoint="10.0.0.1:8080",
        balancer="round_robin",
    )
    assert attrs.get("http.request.resend_count") == resend
    assert attrs["url.full"] == "http://10.0.0.1:8080/a?b=1"
    assert attrs["pilotfish.attempt"] == attempt


@pytest.mark.parametrize(
    ("address", "url_host", "peer"),
    [
        ("10.0.0.1", "10.0.0.1", True),
        ("::1", "[::1]", True),
        ("api.internal", "api.internal", False),  # a name is not a peer address
    ],
)
def test_client_address_forms(address, url_host, peer):
    attrs = semconv.client_attributes(
        method="GET",
        address=address,
        port=81,
        path="/",
        attempt=1,
        cluster="c",
        endpoint="e",
        balancer="random",
    )
    assert attrs["url.full"] == f"http://{url_host}:81/"
    assert attrs["server.address"] == address
    assert ("network.peer.address" in attrs) == peer


@pytest.mark.parametrize(
    ("host", "scheme", "expected"),
    [
        ("example.com:8080", "http", ("example.com", 8080)),
        ("example.com", "http", ("example.com", 80)),
        ("example.com", "https", ("example.com", 443)),
        ("[::1]:9000", "http", ("::1", 9000)),
        ("[::1]", "http", ("::1", 80)),
    ],
)
def test_split_host(host, scheme, expected):
    assert semconv.split_host(host, scheme) == expected


def test_server_attributes_prefer_the_forwarded_client():
    attrs = semconv.server_attributes(
        listener="egress",
        method="GET",
        raw_path="/p?q=1",
        scheme="http",
        host="svc:81",
        peer=("10.0.0.9", 5555),
        forwarded_for="203.0.113.7, 10.0.0.2",
        user_agent=None,
        version="1.1",
    )
    assert attrs["client.address"] == "203.0.113.7"
    assert attrs["network.peer.address"] == "10.0.0.9"
    assert (attrs["url.path"], attrs["url.query"]) == ("/p", "q=1")
    assert (attrs["server.address"], attrs["server.port"]) == ("svc", 81)
    assert "user_agent.original" not in attrs


@pytest.mark.parametrize(
    ("status", "klass"),
    [
        (0, "none"),
        (101, "1xx"),
        (200, "2xx"),
        (302, "3xx"),
        (404, "4xx"),
        (503, "5xx"),
        (999, "none"),
    ],
)
def test_code_class(status, klass):
    assert code_class(status) == klass


@pytest.mark.parametrize(
    ("name", "description"),
    [
        ("always_on", "AlwaysOnSampler"),
        ("always_off", "AlwaysOffSampler"),
        ("traceidratio", "TraceIdRatioBased{0.25}"),
        ("parentbased_always_on", "ParentBased{root:AlwaysOnSampler,"),
        ("parentbased_always_off", "ParentBased{root:AlwaysOffSampler,"),
        ("parentbased_traceidratio", "ParentBased{root:TraceIdRatioBased{0.25},"),
    ],
)
def test_sampler_names(name, description):
    got = build_sampler(name, 0.25).get_description()
    assert got == description or (description.endswith(",") and got.startswith(description))


def test_unknown_sampler_is_refused():
    with pytest.raises(ValueError, match="unknown sampler"):
        build_sampler("jaeger_remote", 1.0)
