"""The Consul double answers in the recorded shapes and honours the documented semantics."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from discovery.consul_parse import parse_health_service
from tests.discovery.consul_double import AclToken, ConsulDouble, Fault

FIXTURES = Path(__file__).parent.parent / "fixtures" / "consul"
ENTERPRISE_ONLY = {"Namespace", "Partition"}
# maps of user data: their keys are not schema, only the shape of their values is
DATA_MAPS = {"Meta", "TaggedAddresses"}
# every call here is answered within seconds (the 30 s blocking reads are woken by a change)
CALL_TIMEOUT = aiohttp.ClientTimeout(total=10)


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def assert_shape(actual: Any, documented: Any, where: str = "$", fold: bool = False) -> None:
    """Every documented key is present in ``actual`` with a value of the same JSON type."""
    if documented is None:
        return
    if isinstance(documented, dict):
        assert isinstance(actual, dict), f"{where}: {type(actual).__name__}, documented object"
        for key, value in documented.items():
            if key in ENTERPRISE_ONLY:
                continue
            match = key if key in actual else None
            if match is None and fold:  # README: the docs print some nested keys in lower case
                match = next((k for k in actual if k.casefold() == key.casefold()), None)
            assert match is not None, f"{where}.{key} is documented but missing"
            if key in DATA_MAPS:
                assert isinstance(actual[match], dict), f"{where}.{key} should be an object"
                if value and actual[match]:
                    first = next(iter(actual[match].values()))
                    assert_shape(first, next(iter(value.values())), f"{where}.{key}.*", True)
            else:
                assert_shape(actual[match], value, f"{where}.{key}", fold)
    elif isinstance(documented, list):
        assert isinstance(actual, list), f"{where}: {type(actual).__name__}, documented array"
        for index, item in enumerate(documented):
            if actual:
                assert_shape(actual[min(index, len(actual) - 1)], item, f"{where}[{index}]", fold)
    else:
        assert type(actual) is type(documented), f"{where}: {actual!r} vs {documented!r}"


async def call(
    double: ConsulDouble,
    method: str,
    path: str,
    *,
    params: Any = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, dict[str, str]]:
    async with (
        aiohttp.ClientSession(timeout=CALL_TIMEOUT) as session,
        session.request(
            method,
            f"http://{double.address}{path}",
            params=params,
            data=None if body is None else json.dumps(body),
            headers=headers,
        ) as resp,
    ):
        text = await resp.text()
        is_json = resp.content_type == "application/json"
        return resp.status, json.loads(text) if is_json else text, dict(resp.headers)


def add_redis(double: ConsulDouble) -> None:
    """The instance the documented health/service sample describes."""
    double.add_instance(
        "redis", "redis", address="10.1.10.12", port=8000, node="foobar",
        node_address="10.1.10.12", tags=["primary"], meta={"redis_version": "4.0"},
        weights={"Passing": 10, "Warning": 1},
        tagged_addresses={
            "lan": {"Address": "10.1.10.12", "Port": 8000},
            "wan": {"Address": "198.18.1.2", "Port": 80},
        },
    )  # fmt: skip


# -- shapes ---------------------------------------------------------------------------------


async def test_health_service_entries_have_the_recorded_shape(consul_double: ConsulDouble) -> None:
    add_redis(consul_double)
    status, body, headers = await call(consul_double, "GET", "/v1/health/service/redis")
    assert status == 200
    assert_shape(body, load("health-service.json"))
    checks = body[0]["Checks"]
    assert [c["CheckID"] for c in checks] == ["serfHealth", "service:redis"]  # node-level first
    assert {"X-Consul-Index", "X-Consul-KnownLeader", "X-Consul-LastContact"} <= set(headers)


async def test_the_double_and_the_sample_parse_to_the_same_snapshot(
    consul_double: ConsulDouble,
) -> None:
    add_redis(consul_double)
    _, body, _ = await call(consul_double, "GET", "/v1/health/service/redis")
    ours = parse_health_service(body, passing_only=True)
    documented = parse_health_service(load("health-service.json"), passing_only=True)
    assert ours.same_content(documented)


async def test_agent_services_have_the_recorded_shape(consul_double: ConsulDouble) -> None:
    registration = load("agent-service-register.request.json")
    del registration["Check"]  # a script check: a default agent refuses those
    registration["TaggedAddresses"] = {
        "lan": {"Address": "127.0.0.1", "Port": 8000},
        "wan": {"Address": "198.51.100.53", "Port": 80},
    }
    status, _, _ = await call(consul_double, "PUT", "/v1/agent/service/register", body=registration)
    assert status == 200
    _, services, _ = await call(consul_double, "GET", "/v1/agent/services")
    documented = load("agent-services.json")
    assert_shape(services["redis1"], documented["redis"])
    _, one, _ = await call(consul_double, "GET", "/v1/agent/service/redis1")
    assert_shape(one, documented["redis"])


async def test_agent_checks_have_the_recorded_shape(consul_double: ConsulDouble) -> None:
    body = {"ID": "redis", "Name": "redis", "Port": 8000, "Check": {"TTL": "10s"}}
    await call(consul_double, "PUT", "/v1/agent/service/register", body=body)
    _, checks, _ = await call(consul_double, "GET", "/v1/agent/checks")
    assert_shape(checks["service:redis"], load("agent-checks.json")["service:redis"])
    assert checks["service:redis"]["Status"] == "critical"  # a new check starts critical


def test_the_shape_check_notices_a_missing_key() -> None:
    documented = load("health-service.json")
    broken = json.loads(json.dumps(documented))
    del broken[0]["Service"]["Weights"]
    with pytest.raises(AssertionError, match=r"Service\.Weights is documented but missing"):
        assert_shape(broken, documented)


# -- blocking queries -------------------------------------------------------------------------


async def test_a_blocking_read_returns_on_change_with_a_higher_index(
    consul_double: ConsulDouble,
) -> None:
    add_redis(consul_double)
    _, _, headers = await call(consul_double, "GET", "/v1/health/service/redis")
    index = int(headers["X-Consul-Index"])
    params = {"index": str(index), "wait": "30s"}
    pending = asyncio.ensure_future(
        call(consul_double, "GET", "/v1/health/service/redis", params=params)
    )
    await consul_double.wait_requests(2)
    assert not pending.done()
    consul_double.add_instance("redis", "redis-2", address="10.1.10.13", port=8000)
    _, body, headers = await asyncio.wait_for(pending, 1.0)
    assert len(body) == 2 and int(headers["X-Consul-Index"]) > index


async def test_a_blocking_read_expires_after_wait_plus_at_most_a_sixteenth(
    consul_double: ConsulDouble,
) -> None:
    add_redis(consul_double)
    _, _, headers = await call(consul_double, "GET", "/v1/health/service/redis")
    loop = asyncio.get_running_loop()
    start = loop.time()
    params = {"index": headers["X-Consul-Index"], "wait": "400ms"}
    _, body, again = await call(consul_double, "GET", "/v1/health/service/redis", params=params)
    elapsed = loop.time() - start
    assert 0.4 <= elapsed < 0.4 * 17 / 16 + 0.2
    assert again["X-Consul-Index"] == headers["X-Consul-Index"] and len(body) == 1


async def test_a_restore_wakes_blocked_reads_with_a_lower_index(
    consul_double: ConsulDouble,
) -> None:
    add_redis(consul_double)
    _, _, headers = await call(consul_double, "GET", "/v1/health/service/redis")
    params = {"index": headers["X-Consul-Index"], "wait": "30s"}
    pending = asyncio.ensure_future(
        call(consul_double, "GET", "/v1/health/service/redis", params=params)
    )
    await consul_double.wait_requests(2)
    consul_double.rewind_index(3)
    _, _, after = await asyncio.wait_for(pending, 1.0)
    assert int(after["X-Consul-Index"]) == 3


async def test_the_index_header_is_never_zero_even_for_an_unknown_service() -> None:
    async with ConsulDouble() as double:
        double.state.rewind(0)
        _, body, headers = await call(double, "GET", "/v1/health/service/nothing")
    assert body == [] and headers["X-Consul-Index"] == "1"


# -- query parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, {"a", "b", "c"}),
        ({"passing": ""}, {"a"}),
        ({"passing": "true"}, {"a"}),
        ({"passing": "1"}, {"a"}),
        ({"passing": "false"}, {"a", "b", "c"}),
        ([("tag", "v1")], {"a", "b"}),
        ([("tag", "v1"), ("tag", "canary")], {"b"}),
        ({"dc": "dc1"}, {"a", "b", "c"}),
    ],
)
async def test_filters(consul_double: ConsulDouble, params: Any, expected: set[str]) -> None:
    consul_double.add_instance("web", "a", port=80, tags=["v1"])
    consul_double.add_instance("web", "b", port=81, tags=["v1", "canary"], status="warning")
    consul_double.add_instance("web", "c", port=82, status="critical")
    _, body, _ = await call(consul_double, "GET", "/v1/health/service/web", params=params)
    assert {e["Service"]["ID"] for e in body} == expected


@pytest.mark.parametrize(
    ("params", "status", "text"),
    [
        ({"passing": "yes"}, 400, "Invalid value for ?passing"),
        ({"index": "x", "wait": "1s"}, 400, "Invalid index"),
        ({"index": "5", "wait": "soon"}, 400, "Invalid wait time"),
        ({"dc": "dc9"}, 500, "No path to datacenter"),
    ],
)
async def test_bad_queries_get_consul_errors(
    consul_double: ConsulDouble, params: dict[str, str], status: int, text: str
) -> None:
    got_status, body, _ = await call(consul_double, "GET", "/v1/health/service/web", params=params)
    assert (got_status, body) == (status, text)


# -- agent endpoints ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "text"),
    [
        ("PUT", "/v1/agent/service/register", {"Port": 80}, 400, "Missing service name"),
        (
            "PUT", "/v1/agent/service/register",
            {"Name": "x", "Check": {"Args": ["/bin/true"], "Interval": "10s"}},
            500, "Scripts are disabled on this agent from remote calls; to enable, "
            "configure 'enable_script_checks' to true",
        ),
        (
            "PUT", "/v1/agent/service/deregister/nope", None, 404,
            'Unknown service ID "nope". Ensure that the service ID is passed, '
            "not the service name.",
        ),
        ("GET", "/v1/agent/service/nope", None, 404, "unknown service ID: nope"),
        (
            "PUT", "/v1/agent/check/pass/nope", None, 404,
            'Unknown check ID "nope". Ensure that the check ID is passed, not the check name.',
        ),
        ("PUT", "/v1/agent/service/maintenance/nope", None, 400, "Missing value for enable"),
    ],
)  # fmt: skip
async def test_agent_errors(
    consul_double: ConsulDouble, method: str, path: str, body: Any, status: int, text: str
) -> None:
    assert (await call(consul_double, method, path, body=body))[:2] == (status, text)


async def test_ttl_updates_only_apply_to_ttl_checks(consul_double: ConsulDouble) -> None:
    http = {"Name": "web", "ID": "web-1", "Port": 80,
            "Check": {"HTTP": "http://127.0.0.1:80/health", "Interval": "5s"}}  # fmt: skip
    assert (await call(consul_double, "PUT", "/v1/agent/service/register", body=http))[0] == 200
    status, text, _ = await call(consul_double, "PUT", "/v1/agent/check/pass/service:web-1")
    assert (status, text) == (500, 'CheckID "service:web-1" does not have associated TTL')


async def test_a_ttl_check_expires_to_critical(consul_double: ConsulDouble) -> None:
    body = {"Name": "web", "ID": "web-1", "Port": 80, "Check": {"TTL": "300ms"}}
    await call(consul_double, "PUT", "/v1/agent/service/register", body=body)
    update = {"Status": "passing", "Output": "fine"}
    status, _, _ = await call(
        consul_double, "PUT", "/v1/agent/check/update/service:web-1", body=update
    )
    assert status == 200
    _, entries, headers = await call(consul_double, "GET", "/v1/health/service/web")
    assert entries[0]["Checks"][-1]["Status"] == "passing"
    params = {"index": headers["X-Consul-Index"], "wait": "5s"}  # returns when the check flips
    _, entries, _ = await call(consul_double, "GET", "/v1/health/service/web", params=params)
    assert (entries[0]["Checks"][-1]["Status"], entries[0]["Checks"][-1]["Output"]) == (
        "critical",
        "TTL expired",
    )


async def test_restart_forgets_only_agent_registrations(consul_double: ConsulDouble) -> None:
    consul_double.add_instance("web", "remote", port=80)
    await call(consul_double, "PUT", "/v1/agent/service/register", body={"Name": "web", "Port": 81})
    consul_double.restart_agent()
    _, body, _ = await call(consul_double, "GET", "/v1/health/service/web")
    assert [e["Service"]["ID"] for e in body] == ["remote"]
    assert (await call(consul_double, "GET", "/v1/agent/services"))[1] == {}


# -- ACL --------------------------------------------------------------------------------------

TOKENS = {"writer-secret": AclToken("accessor-w"), "reader-secret": AclToken("accessor-r", False)}


@pytest.mark.parametrize(
    ("params", "headers", "status", "expected"),
    [
        ({}, {"X-Consul-Token": "writer-secret"}, 200, ["web-1"]),
        ({"token": "writer-secret"}, {}, 200, ["web-1"]),
        ({}, {"Authorization": "Bearer writer-secret"}, 200, ["web-1"]),
        ({}, {}, 200, []),  # anonymous: filtered, not refused
        ({}, {"X-Consul-Token": "guess"}, 403, "ACL not found"),
    ],
)
async def test_acl_reads(
    params: dict[str, str], headers: dict[str, str], status: int, expected: Any
) -> None:
    async with ConsulDouble(acl_tokens=TOKENS) as double:
        double.add_instance("web", "web-1", port=80)
        got = await call(double, "GET", "/v1/health/service/web", params=params, headers=headers)
    body = got[1] if status != 200 else [e["Service"]["ID"] for e in got[1]]
    assert (got[0], body) == (status, expected)


async def test_acl_write_needs_permission() -> None:
    async with ConsulDouble(acl_tokens=TOKENS) as double:
        status, text, _ = await call(
            double, "PUT", "/v1/agent/service/register",
            body={"Name": "web", "Port": 80}, headers={"X-Consul-Token": "reader-secret"},
        )  # fmt: skip
    assert status == 403
    assert text == (
        "Permission denied: token with AccessorID 'accessor-r' lacks permission "
        "'service:write' on \"web\""
    )


# -- faults -----------------------------------------------------------------------------------


async def test_faults_are_injected_and_cleared(consul_double: ConsulDouble) -> None:
    consul_double.add_instance("web", "web-1", port=80)
    consul_double.inject(Fault.ERROR_500)
    assert (await call(consul_double, "GET", "/v1/health/service/web"))[0] == 500
    consul_double.inject(Fault.BAD_JSON)
    with pytest.raises(json.JSONDecodeError):
        await call(consul_double, "GET", "/v1/health/service/web")
    consul_double.inject(Fault.ZERO_INDEX)
    assert (await call(consul_double, "GET", "/v1/health/service/web"))[2]["X-Consul-Index"] == "0"
    consul_double.inject(Fault.HANG)
    hung = asyncio.ensure_future(call(consul_double, "GET", "/v1/health/service/web"))
    await consul_double.wait_requests(4)
    assert not hung.done()
    consul_double.clear_faults()
    assert (await asyncio.wait_for(hung, 1.0))[0] == 500
    assert (await call(consul_double, "GET", "/v1/health/service/web"))[0] == 200
