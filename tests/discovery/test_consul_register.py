"""ConsulRegistration: the documented request body, the chores of run(), and the agent double."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from discovery.consul import (
    ConsulClientOptions,
    ConsulRegistration,
    HttpCheck,
    TtlCheck,
    default_service_id,
    registration_payload,
)
from discovery.consul_register import Chore, RegistrationSchedule
from discovery.errors import DiscoveryError
from tests.discovery.consul_double import AclToken, ConsulDouble
from tests.discovery.waiting import eventually, running

FIXTURES = Path(__file__).parent.parent / "fixtures" / "consul"
REGISTER = "/v1/agent/service/register"
DEREGISTER = "/v1/agent/service/deregister/"
MAINTENANCE = "/v1/agent/service/maintenance/"
AGENT_SERVICE = "/v1/agent/service/payments"
SECRET = "4b1d-read-only-secret"


def documented_request() -> dict[str, Any]:
    return json.loads((FIXTURES / "agent-service-register.request.json").read_text())


class HeldRegistrations(ConsulDouble):
    """The agent double, holding each registration while ``holding`` until ``release()``.

    A held registration is recorded on arrival and applied only once released, as a slow agent
    would apply it after requests that arrive in the meantime.
    """

    def __init__(self) -> None:
        super().__init__()
        self.holding = False
        self.held = 0  # registrations held so far
        self._released = asyncio.Event()

    def release(self) -> None:
        self.holding = False
        self._released.set()

    async def stop(self) -> None:
        self.release()
        await super().stop()

    async def _register(self, request: web.Request) -> web.Response:
        if self.holding:
            self.held += 1
            await self._released.wait()
        return await super()._register(request)


@pytest.fixture
async def held_double() -> AsyncIterator[HeldRegistrations]:
    async with HeldRegistrations() as double:
        yield double


def registration(double: ConsulDouble, **kwargs: Any) -> ConsulRegistration:
    options = ConsulClientOptions(address=double.address, token=kwargs.pop("token", None))
    settings: dict[str, Any] = {
        "service_id": "payments-host1-9000",
        "name": "payments",
        "address": "10.0.0.7",
        "port": 9000,
        "tags": ("v1",),
        "meta": {"version": "1.2.3"},
        "check": TtlCheck(ttl=0.6),
        "verify_interval": 0.2,
        "backoff_cap": 0.2,
        "rng": random.Random(3),
    }
    return ConsulRegistration(options, **(settings | kwargs))


# -- the request body ---------------------------------------------------------------------------


def test_default_service_id() -> None:
    assert default_service_id("payments", "host1", 9000) == "payments-host1-9000"


@pytest.mark.parametrize(
    ("check", "expected_check"),
    [
        (
            HttpCheck("http://10.0.0.7:9000/health"),
            {"HTTP": "http://10.0.0.7:9000/health", "Interval": "5s", "Timeout": "1s",
             "DeregisterCriticalServiceAfter": "1m"},
        ),
        (TtlCheck(), {"TTL": "10s", "DeregisterCriticalServiceAfter": "1m"}),
        (TtlCheck(ttl=2.5, deregister_critical_after=None), {"TTL": "2500ms"}),
        (HttpCheck("http://h/", interval=10, timeout=0.5, deregister_critical_after=5400),
         {"HTTP": "http://h/", "Interval": "10s", "Timeout": "500ms",
          "DeregisterCriticalServiceAfter": "1h30m"}),
    ],
)  # fmt: skip
def test_the_body_has_the_documented_shape(
    check: HttpCheck | TtlCheck, expected_check: dict[str, str]
) -> None:
    body = registration_payload(
        service_id="payments-host1-9000", name="payments", address="10.0.0.7", port=9000,
        tags=("v1",), meta={"version": "1.2.3"}, check=check,
    )  # fmt: skip
    documented = documented_request()
    assert body["Check"] == expected_check
    for key, value in body.items():
        assert key in documented, f"{key} is not a documented field"
        assert type(value) is type(documented[key]), key
    allowed_check_keys = set(documented["Check"]) - {"Args"} | {"HTTP", "TTL"}
    assert set(body["Check"]) <= allowed_check_keys
    assert {k: body[k] for k in ("ID", "Name", "Tags", "Address", "Port", "Meta")} == {
        "ID": "payments-host1-9000",
        "Name": "payments",
        "Tags": ["v1"],
        "Address": "10.0.0.7",
        "Port": 9000,
        "Meta": {"version": "1.2.3"},
    }


def test_an_empty_address_is_left_to_the_agent() -> None:
    body = registration_payload(service_id="a", name="a", address="", port=1)
    assert "Address" not in body and "Check" not in body


# -- the schedule (pure) -------------------------------------------------------------------------


def test_schedule_registers_first_then_reports_and_verifies_on_time() -> None:
    schedule = RegistrationSchedule(report_every=2.0, verify_every=10.0, now=0.0)
    assert schedule.due(0.0) == [Chore.REGISTER]
    schedule.done(Chore.REGISTER, 0.5)
    assert schedule.due(0.5) == [Chore.REPORT]  # a new TTL check is critical: report now
    schedule.done(Chore.REPORT, 0.5)
    assert schedule.wait(0.5) == pytest.approx(2.0)
    assert schedule.due(2.5) == [Chore.REPORT]
    schedule.done(Chore.REPORT, 2.5)
    assert schedule.due(10.0) == [Chore.REPORT, Chore.VERIFY]
    schedule.lost(10.0)
    assert schedule.due(10.0) == [Chore.REGISTER]
    assert schedule.wait(10.0) == 0.0


def test_schedule_without_ttl_only_verifies() -> None:
    schedule = RegistrationSchedule(report_every=None, verify_every=5.0, now=0.0)
    schedule.done(Chore.REGISTER, 0.0)
    assert schedule.due(4.9) == []
    assert schedule.due(5.0) == [Chore.VERIFY]


# -- against the agent double --------------------------------------------------------------------


async def test_register_then_deregister(consul_double: ConsulDouble) -> None:
    reg = registration(consul_double, check=HttpCheck("http://10.0.0.7:9000/health"))
    await reg.register()
    (sent,) = consul_double.requests_to(REGISTER)
    assert json.loads(sent.body) == reg.payload
    svc = consul_double.local_service("payments-host1-9000")
    assert svc is not None
    assert (svc.name, svc.address, svc.port, svc.tags, svc.meta) == (
        "payments", "10.0.0.7", 9000, ["v1"], {"version": "1.2.3"},
    )  # fmt: skip
    check = consul_double.local_check("service:payments-host1-9000")
    assert check is not None and (check.type, check.interval) == ("http", "5s")
    await reg.deregister()
    assert consul_double.local_service("payments-host1-9000") is None
    await reg.deregister()  # already gone: not an error


async def test_a_ttl_check_is_kept_passing_while_the_app_is_healthy(
    consul_double: ConsulDouble,
) -> None:
    healthy = True

    async def app_health() -> bool:
        return healthy

    reg = registration(consul_double, app_health=app_health)
    async with running(reg):
        # TTL is 0.6 s and passes go out every 0.2 s: after more than two TTLs the double
        # would have expired the check had any pass been missed
        await consul_double.wait_requests(8, "/v1/agent/check/pass/", timeout=3.0)
        check = consul_double.local_check(reg.check_id)
        assert check is not None and check.status == "passing"
        assert check.output == "pilotfish: application healthy"
        healthy = False
        await eventually(lambda: check.status == "critical", timeout=1.0)
        assert check.output == "pilotfish: application reports unhealthy"


async def test_an_app_probe_that_raises_counts_as_unhealthy(consul_double: ConsulDouble) -> None:
    async def app_health() -> bool:
        raise ConnectionResetError

    reg = registration(consul_double, app_health=app_health)
    async with running(reg):
        (failed,) = await consul_double.wait_requests(1, "/v1/agent/check/fail/", timeout=1.0)
    assert "ConnectionResetError" in (failed.param("note") or "")


async def test_the_service_is_registered_again_after_the_agent_restarts(
    consul_double: ConsulDouble, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="discovery")
    reg = registration(consul_double, check=HttpCheck("http://10.0.0.7:9000/health"))
    async with running(reg):
        await consul_double.wait_requests(1, REGISTER)
        await consul_double.wait_requests(1, "/v1/agent/service/payments-host1-9000")
        consul_double.restart_agent()
        assert consul_double.local_service("payments-host1-9000") is None
        await eventually(lambda: consul_double.local_service("payments-host1-9000") is not None)
    assert len(consul_double.requests_to(REGISTER)) == 2
    assert any("lost service" in r.getMessage() for r in caplog.records)


async def test_a_lost_ttl_check_also_triggers_registration(consul_double: ConsulDouble) -> None:
    reg = registration(consul_double, verify_interval=60.0)  # only the TTL pass can notice
    async with running(reg):
        await consul_double.wait_requests(1, "/v1/agent/check/pass/")
        consul_double.restart_agent()
        await consul_double.wait_requests(2, REGISTER, timeout=2.0)

        def passing_again() -> bool:
            check = consul_double.local_check(reg.check_id)
            return check is not None and check.status == "passing"

        await eventually(passing_again, timeout=2.0)


async def test_deregister_ends_run(consul_double: ConsulDouble) -> None:
    reg = registration(consul_double)
    async with running(reg) as task:
        await eventually(lambda: consul_double.local_service("payments-host1-9000") is not None)
        await reg.deregister()
        done, _ = await asyncio.wait({task}, timeout=1.0)
        assert done, "run() still going 1 s after deregister()"
    assert consul_double.local_service("payments-host1-9000") is None


async def test_maintenance_mode(consul_double: ConsulDouble) -> None:
    reg = registration(consul_double)
    await reg.register()
    await reg.maintenance(True, "deploying v2")
    check = consul_double.local_check("_service_maintenance:payments-host1-9000")
    assert check is not None and (check.status, check.notes) == ("critical", "deploying v2")
    (request,) = consul_double.requests_to("/v1/agent/service/maintenance/")
    assert (request.param("enable"), request.param("reason")) == ("true", "deploying v2")
    await reg.maintenance(False, "")
    assert consul_double.local_check("_service_maintenance:payments-host1-9000") is None
    await reg.deregister()
    with pytest.raises(DiscoveryError, match="does not know service"):
        await reg.maintenance(True, "too late")


async def test_a_token_without_write_permission_is_refused_without_leaking_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = {SECRET: AclToken("accessor-ro", write=False)}
    async with ConsulDouble(acl_tokens=tokens) as double:
        reg = registration(double, token=SECRET)
        with pytest.raises(DiscoveryError, match="HTTP 403 Permission denied") as raised:
            await reg.register()
        async with running(reg):
            await double.wait_requests(3, REGISTER)
        assert all(r.headers.get("X-Consul-Token") == SECRET for r in double.requests)
    assert SECRET not in str(raised.value)
    assert SECRET not in caplog.text
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Permission denied" in warnings[0].getMessage()


# -- shutting down while a chore talks to the agent ----------------------------------------------


def paths_after(double: ConsulDouble, path_prefix: str) -> list[str]:
    """The paths of the requests that arrived after the first one under ``path_prefix``."""
    paths = [r.path for r in double.requests]
    first = next(i for i, p in enumerate(paths) if p.startswith(path_prefix))
    return paths[first + 1 :]


async def run_reregisters_at_start(
    double: HeldRegistrations, reg: ConsulRegistration
) -> asyncio.Task[None]:
    await reg.register()  # as the sidecar does before starting run()
    double.holding = True
    return asyncio.create_task(reg.run())


async def agent_forgets_the_service(
    double: HeldRegistrations, reg: ConsulRegistration
) -> asyncio.Task[None]:
    run = asyncio.create_task(reg.run())
    await eventually(lambda: double.local_service(reg.service_id) is not None)
    double.holding = True
    double.restart_agent()
    return run


Setup = Callable[[HeldRegistrations, ConsulRegistration], Awaitable[asyncio.Task[None]]]


@pytest.mark.parametrize("setup", [run_reregisters_at_start, agent_forgets_the_service])
async def test_deregister_during_a_registration_is_the_last_word(
    held_double: HeldRegistrations, caplog: pytest.LogCaptureFixture, setup: Setup
) -> None:
    caplog.set_level(logging.INFO, logger="discovery")
    reg = registration(held_double)  # a TTL check: a report is due right after registering
    run = await setup(held_double, reg)
    try:
        await eventually(lambda: held_double.held == 1)
        assert held_double.requests_to(DEREGISTER) == []
        deregistering = asyncio.create_task(reg.deregister())
        # Release only once deregister() has either reached the agent (nothing makes it wait
        # for the registration under way) or said it waits for that registration.
        await eventually(
            lambda: (
                bool(held_double.requests_to(DEREGISTER)) or "after the consul call" in caplog.text
            )
        )
        held_double.release()
        async with asyncio.timeout(2.0):
            await deregistering
            await run
    finally:
        run.cancel()
    assert held_double.local_service(reg.service_id) is None
    assert held_double.local_check(reg.check_id) is None
    assert len(held_double.requests_to(DEREGISTER)) == 1
    assert paths_after(held_double, DEREGISTER) == []  # no chore after deregistration


@pytest.mark.parametrize(
    "call",
    [ConsulRegistration.register, ConsulRegistration.run],  # run's first chore registers
    ids=["register", "run"],
)
async def test_a_registration_given_up_on_still_comes_before_the_deregistration(
    held_double: HeldRegistrations, call: Callable[[ConsulRegistration], Awaitable[None]]
) -> None:
    reg = registration(held_double)
    held_double.holding = True
    caller = asyncio.create_task(call(reg))
    await eventually(lambda: held_double.held == 1)  # the agent is applying it, slowly
    caller.cancel()  # the caller gives up, as a start-up timeout or a signal would make it
    with pytest.raises(asyncio.CancelledError):
        await caller
    deregistering = asyncio.create_task(reg.deregister())
    # the abandoned request is still being applied: deregistering now would come before it
    with pytest.raises(TimeoutError):
        await held_double.wait_requests(1, DEREGISTER, timeout=0.3)
    held_double.release()
    async with asyncio.timeout(2.0):
        await deregistering
    assert held_double.local_service(reg.service_id) is None
    assert [r.path for r in held_double.requests] == [REGISTER, DEREGISTER + reg.service_id]


class HeldMaintenance(ConsulDouble):
    """The agent double, holding each maintenance request until ``release()``."""

    def __init__(self) -> None:
        super().__init__()
        self._released = asyncio.Event()

    def release(self) -> None:
        self._released.set()

    async def stop(self) -> None:
        self.release()
        await super().stop()

    async def _maintenance(self, request: web.Request) -> web.Response:
        await self._released.wait()
        return await super()._maintenance(request)


async def test_no_chore_runs_once_deregistering_began_even_when_maintenance_fails() -> None:
    async with HeldMaintenance() as double:
        # no TTL reports: the only chore is the check that the agent still knows the service
        reg = registration(double, check=None, verify_interval=0.2)
        async with running(reg):
            await double.wait_requests(1, REGISTER)
            double.restart_agent()  # the next check would find the service gone, register again
            deregistering = asyncio.create_task(reg.deregister(maintenance="shutting down"))
            await double.wait_requests(1, MAINTENANCE)
            # the check comes due while the agent holds the maintenance request
            with pytest.raises(TimeoutError):
                await double.wait_requests(1, AGENT_SERVICE, timeout=0.5)
            double.release()  # the agent answers 404: it does not know the service
            async with asyncio.timeout(2.0):
                await deregistering
        assert double.local_service(reg.service_id) is None
        assert paths_after(double, MAINTENANCE) == [DEREGISTER + reg.service_id]


async def test_close_during_a_registration_ends_run_without_further_chores(
    held_double: HeldRegistrations,
) -> None:
    reg = registration(held_double)
    held_double.holding = True
    run = asyncio.create_task(reg.run())
    try:
        await eventually(lambda: held_double.held == 1)
        await reg.close()
        held_double.release()
        async with asyncio.timeout(2.0):
            await run
    finally:
        run.cancel()
    # the registration under way completes; the TTL report due right after it is not sent
    assert held_double.local_service(reg.service_id) is not None
    assert [r.path for r in held_double.requests] == [REGISTER]


async def test_run_after_deregister_performs_no_chore(consul_double: ConsulDouble) -> None:
    reg = registration(consul_double)
    await reg.deregister()
    async with asyncio.timeout(1.0):
        await reg.run()
    assert [r.path for r in consul_double.requests] == [DEREGISTER + reg.service_id]


async def test_register_after_deregister_lets_run_work_again(consul_double: ConsulDouble) -> None:
    reg = registration(consul_double)
    await reg.deregister()
    await reg.register()
    async with running(reg):
        await consul_double.wait_requests(1, "/v1/agent/check/pass/")
    assert consul_double.local_service(reg.service_id) is not None
