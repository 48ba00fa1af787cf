"""Registering the local service with the local Consul agent, and keeping it registered.

``ConsulRegistration.run`` is a long-lived loop doing three chores, scheduled by the pure
``RegistrationSchedule``:

* REGISTER  - ``PUT /v1/agent/service/register`` with Consul's documented body (``ID``, ``Name``,
  ``Tags``, ``Address``, ``Port``, ``Meta``, ``Check``; durations as Go strings like "5s", "1m").
  Due at start and whenever the agent turns out to have forgotten the service;
* REPORT    - TTL checks only: every ttl/3, pass the check while ``app_health()`` says True and
  fail it otherwise (an exception or no answer within ttl/3 counts as unhealthy). A 404 from
  the agent means it lost the check: REGISTER is due again;
* VERIFY    - every ``verify_interval`` seconds, ``GET /v1/agent/service/<id>``; a 404 means the
  agent restarted without our registration: REGISTER is due again.

The check gets Consul's default id ``service:<service id>`` (one check per service).
A failed chore keeps its due time; the loop backs off (jittered, capped), logs one warning
per outage and one info line on recovery. ``deregister()`` ends ``run``; nothing deregisters
implicitly, so a crashed process is cleaned up by ``DeregisterCriticalServiceAfter``.

Invariants: every call to the agent (each chore's, ``register()``, ``maintenance()``,
``deregister()``) holds one lock, so they never overlap, and they reach the agent in the order
they took it; once ``deregister()`` or ``close()`` has been called no chore starts. A call under
way finishes first and ``deregister()`` follows it, so deregistration is the last write to the
agent and a shutdown never leaves the service registered again behind it. That holds when the
caller of a call gives up on it (a timeout, a cancelled start-up): the call runs in a task of
its own and keeps the lock until the agent answered or the client's own time limit ran out,
because a request abandoned on the wire may still be applied by the agent, after a
deregistration sent in the meantime.
Cancelling ``run`` always ends it: its waits are ``asyncio.timeout`` blocks, never
``asyncio.wait_for`` (see ``consul_client``).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar

from discovery.consul_client import ConsulClient, ConsulClientOptions, go_duration
from discovery.errors import DiscoveryError
from resilience.backoff import JitteredBackoff

log = logging.getLogger(__name__)

AppHealth = Callable[[], Awaitable[bool]]
T = TypeVar("T")


@dataclass(frozen=True)
class HttpCheck:
    """Consul probes ``url`` every ``interval``; 2xx passing, 429 warning, else critical."""

    url: str
    interval: float = 5.0
    timeout: float = 1.0
    deregister_critical_after: float | None = 60.0


@dataclass(frozen=True)
class TtlCheck:
    """Critical unless Pilotfish reports in within ``ttl`` seconds (it does every ttl/3)."""

    ttl: float = 10.0
    deregister_critical_after: float | None = 60.0


def default_service_id(name: str, hostname: str, port: int) -> str:
    return f"{name}-{hostname}-{port}"


def check_id_for(service_id: str) -> str:
    """The id Consul gives the single check registered along with a service."""
    return f"service:{service_id}"


def registration_payload(
    *,
    service_id: str,
    name: str,
    address: str,
    port: int,
    tags: Sequence[str] = (),
    meta: Mapping[str, str] | None = None,
    check: HttpCheck | TtlCheck | None = None,
) -> dict[str, object]:
    """The ``PUT /v1/agent/service/register`` body; an empty address lets the agent use its own."""
    payload: dict[str, object] = {"ID": service_id, "Name": name, "Tags": list(tags)}
    if address:
        payload["Address"] = address
    payload["Port"] = port
    payload["Meta"] = dict(meta or {})
    if check is not None:
        payload["Check"] = _check_payload(check)
    return payload


def _check_payload(check: HttpCheck | TtlCheck) -> dict[str, str]:
    body: dict[str, str]
    if isinstance(check, HttpCheck):
        body = {
            "HTTP": check.url,
            "Interval": go_duration(check.interval),
            "Timeout": go_duration(check.timeout),
        }
    else:
        body = {"TTL": go_duration(check.ttl)}
    if check.deregister_critical_after is not None:
        body["DeregisterCriticalServiceAfter"] = go_duration(check.deregister_critical_after)
    return body


class Chore(enum.Enum):
    REGISTER = "register"
    REPORT = "report"
    VERIFY = "verify"


class ChoreResult(enum.Enum):
    DONE = "done"
    LOST = "lost"  # the agent turned out not to know the service
    SKIPPED = "skipped"  # not performed: deregister() or close() came first


class RegistrationSchedule:
    """When each chore is next due; pure (times are monotonic seconds passed in)."""

    def __init__(self, *, report_every: float | None, verify_every: float, now: float) -> None:
        self._every = {Chore.REPORT: report_every, Chore.VERIFY: verify_every}
        self._due: dict[Chore, float] = {Chore.REGISTER: now, Chore.VERIFY: now + verify_every}
        if report_every is not None:
            self._due[Chore.REPORT] = now

    def due(self, now: float) -> list[Chore]:
        """Chores due at ``now``; REGISTER first, and alone, since the others need it done."""
        if self._due.get(Chore.REGISTER, now + 1) <= now:
            return [Chore.REGISTER]
        return [c for c in (Chore.REPORT, Chore.VERIFY) if self._due.get(c, now + 1) <= now]

    def done(self, chore: Chore, now: float) -> None:
        if chore is Chore.REGISTER:
            del self._due[Chore.REGISTER]
            if self._every[Chore.REPORT] is not None:
                self._due[Chore.REPORT] = now  # a fresh TTL check starts critical: report at once
            return
        every = self._every[chore]
        assert every is not None
        self._due[chore] = now + every

    def lost(self, now: float) -> None:
        """The agent forgot the registration: register again now."""
        self._due[Chore.REGISTER] = now

    def wait(self, now: float) -> float:
        """Seconds until the next chore is due (0.0 when one is due now)."""
        return max(0.0, min(self._due.values()) - now)


class ConsulRegistration:
    """Keeps the local service registered with the local agent while ``run`` runs."""

    def __init__(
        self,
        options: ConsulClientOptions,
        *,
        service_id: str,
        name: str,
        address: str,
        port: int,
        tags: Sequence[str] = (),
        meta: Mapping[str, str] = MappingProxyType({}),
        check: HttpCheck | TtlCheck | None = None,
        app_health: AppHealth | None = None,
        verify_interval: float = 10.0,
        rng: random.Random | None = None,
        backoff_base: float = 0.1,
        backoff_cap: float = 10.0,
    ) -> None:
        if not service_id or not name:
            raise ValueError("service_id and name must not be empty")
        if not 0 < port < 65536:
            raise ValueError(f"port must be 1..65535, got {port}")
        self.service_id = service_id
        self.check_id = check_id_for(service_id)
        self.check = check
        self.payload = registration_payload(
            service_id=service_id,
            name=name,
            address=address,
            port=port,
            tags=tags,
            meta=meta,
            check=check,
        )
        self._app_health = app_health
        self._verify_interval = verify_interval
        self._client = ConsulClient(options)
        self._backoff = JitteredBackoff(backoff_base, backoff_cap, rng or random.Random())
        self._failing = False
        # Serialises calls to the agent: a chore's call, deregister(), register(), maintenance().
        self._lock = asyncio.Lock()
        self._closing = asyncio.Event()
        self._calls: set[asyncio.Task[Any]] = set()  # under way, their callers maybe gone

    async def register(self) -> None:
        """Register (or update) the service now, also after ``deregister()``.

        Raises ``DiscoveryError`` on failure.
        """

        async def call() -> None:
            self._closing.clear()
            await self._client.register_service(self.payload)

        await self._serialised(call)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        report_every = self.check.ttl / 3 if isinstance(self.check, TtlCheck) else None
        schedule = RegistrationSchedule(
            report_every=report_every, verify_every=self._verify_interval, now=loop.time()
        )
        while not self._closing.is_set():
            try:
                for chore in schedule.due(loop.time()):
                    result = await self._perform(chore)
                    if result is ChoreResult.SKIPPED:
                        return
                    if result is ChoreResult.DONE:
                        schedule.done(chore, loop.time())
                    else:
                        log.info("consul agent lost service %r; registering again", self.service_id)
                        schedule.lost(loop.time())
            except DiscoveryError as exc:
                if self._closing.is_set():
                    return  # a failure seen while shutting down is no outage worth a warning
                self._outage(str(exc))
                await self._pause(self._backoff.next())
                continue
            self._recovered()
            await self._pause(schedule.wait(loop.time()))

    async def maintenance(self, enable: bool, reason: str) -> None:
        """Put the service in (or take it out of) Consul maintenance mode."""
        # After a registration under way, which would otherwise clear the maintenance check
        known = await self._serialised(
            lambda: self._client.service_maintenance(self.service_id, enable, reason)
        )
        if not known:
            raise DiscoveryError(f"consul agent does not know service {self.service_id!r}")

    async def deregister(self, *, maintenance: str | None = None) -> None:
        """Remove the service from the agent and end ``run``; unknown ids are not an error.

        With ``maintenance``, the service first goes into maintenance mode with that reason
        (callers stop picking it at once); a failure there does not stop the deregistration.
        No chore starts once this is called; a call already talking to the agent finishes
        first, so the deregistration is the last write.
        """
        self._closing.set()
        if self._lock.locked():
            log.info("deregistering %r after the consul call under way", self.service_id)
        if maintenance is not None:
            try:
                await self.maintenance(True, maintenance)
            except DiscoveryError as exc:
                log.info(
                    "no maintenance mode for %r before deregistering: %s", self.service_id, exc
                )
        await self._serialised(lambda: self._client.deregister_service(self.service_id))

    async def close(self) -> None:
        """End ``run`` without deregistering; a call under way is not waited for."""
        self._closing.set()
        await self._client.close()

    async def _perform(self, chore: Chore) -> ChoreResult:
        # The app probe runs outside the lock: a slow probe must not hold up deregister().
        healthy, note = await self._probe_app() if chore is Chore.REPORT else (True, "")

        async def call() -> ChoreResult:
            if self._closing.is_set():
                return ChoreResult.SKIPPED
            if chore is Chore.REGISTER:
                await self._client.register_service(self.payload)
                log.info("registered %r with the consul agent", self.service_id)
                return ChoreResult.DONE
            if chore is Chore.VERIFY:
                known = await self._client.agent_service(self.service_id) is not None
            else:
                known = await self._client.update_ttl(self.check_id, passing=healthy, note=note)
            return ChoreResult.DONE if known else ChoreResult.LOST

        return await self._serialised(call)

    async def _serialised(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()`` under the lock, in a task that outlives a caller who stops waiting.

        Cancelling the caller does not cancel the call: the lock stays held until the agent
        answered (or the client's time limit ran out), so the next call cannot overtake it.
        """

        async def locked() -> T:
            async with self._lock:
                return await call()

        task = asyncio.ensure_future(locked())
        self._calls.add(task)  # a task nobody awaits any more needs a strong reference
        task.add_done_callback(self._calls.discard)
        task.add_done_callback(_retrieve)
        return await asyncio.shield(task)

    async def _probe_app(self) -> tuple[bool, str]:
        if self._app_health is None:
            return True, "pilotfish: serving"
        assert isinstance(self.check, TtlCheck)
        try:
            async with asyncio.timeout(self.check.ttl / 3):
                healthy = await self._app_health()
        except Exception as exc:  # the app's probe failing in any way means "not healthy"
            return False, f"pilotfish: application health probe failed ({type(exc).__name__})"
        if healthy:
            return True, "pilotfish: application healthy"
        return False, "pilotfish: application reports unhealthy"

    async def _pause(self, seconds: float) -> None:
        # Wakes early when deregister() or close() ends the loop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._closing.wait()

    def _outage(self, message: str) -> None:
        if not self._failing:
            self._failing = True
            log.warning("consul registration of %r failing: %s", self.service_id, message)

    def _recovered(self) -> None:
        self._backoff.reset()
        if self._failing:
            self._failing = False
            log.info("consul registration of %r recovered", self.service_id)


def _retrieve(task: asyncio.Task[Any]) -> None:
    # A caller who gave up is not told how the call ended, and asyncio need not warn about it.
    if not task.cancelled():
        task.exception()
