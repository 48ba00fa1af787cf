"""A Consul agent HTTP API double on a real socket (aiohttp, 127.0.0.1, free port).

Served: ``GET /v1/health/service/<name>`` (blocking queries, ``?passing``, ``?tag=`` (all
must match), ``?dc=``), ``PUT /v1/agent/service/register``, ``PUT
/v1/agent/service/deregister/<id>``, ``GET /v1/agent/service/<id>``, ``GET
/v1/agent/services``, ``GET /v1/agent/checks``, ``PUT /v1/agent/check/pass|warn|fail/<id>``,
``PUT /v1/agent/check/update/<id>``, ``PUT /v1/agent/service/maintenance/<id>``.

Behaviour follows tests/fixtures/consul (README and http-semantics.json): blocking reads
hold until the service's index exceeds ``?index`` or ``wait`` (default 5m, max 10m) plus up
to wait/16 passes, and return at once when a snapshot restore rewinds the store; the
``X-Consul-Index`` header is never 0; ``?passing`` filters after the blocking wait. ACLs (when
``acl_tokens`` is given, default policy deny) take ``?token``, then ``X-Consul-Token``, then
``Authorization: Bearer``; an unknown token gets 403 "ACL not found", a missing write
permission 403 "Permission denied: ...", and reads are filtered rather than refused. TTL
checks expire to critical ("TTL expired"). HTTP checks are not probed: tests set their status.
Agent PUTs answer 200 with an empty body; errors are text/plain.

``stop`` releases every held request (blocked read, ``HANG``) for good, then cancels any
request still in progress after ``STOP_WITHIN`` seconds: stopping never waits on a client.

Test controls: ``add_instance``/``remove_instance``/``set_check_status`` (catalog writes as
other agents would make them), ``rewind_index`` (snapshot restore), ``restart_agent``
(forget every registration made through this agent), ``inject``/``clear_faults`` (500, hang,
malformed JSON, the index-0 bug), and ``requests`` (what clients sent).
"""

from __future__ import annotations

import asyncio
import enum
import json
import random
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from tests.discovery.consul_double_rules import (
    ANONYMOUS,
    DEFAULT_MAINTENANCE_REASON,
    FALSE,
    TRUE,
    AclToken,
    ApiError,
    check_from_definition,
    parse_go_duration,
    permission_denied,
    request_token,
    service_from_registration,
    unknown_check,
    unknown_service,
)
from tests.discovery.consul_double_rules import field as json_field
from tests.discovery.consul_double_state import (
    CRITICAL,
    PASSING,
    STATUSES,
    WARNING,
    CheckState,
    ConsulState,
    ServiceState,
    agent_service_json,
    check_json,
)

MAX_WAIT = 600.0
STOP_WITHIN = 2.0
DEFAULT_WAIT = 300.0
HEALTH_PATH = "/v1/health/service/"


class Fault(enum.Enum):
    ERROR_500 = "500"
    HANG = "hang"
    BAD_JSON = "bad-json"
    ZERO_INDEX = "zero-index"  # the old Consul bug the blocking-query docs warn about


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    headers: Mapping[str, str] = field(compare=False)
    body: str = ""

    def param(self, name: str) -> str | None:
        return next((v for k, v in self.query if k == name), None)


class ConsulDouble:
    def __init__(
        self,
        *,
        datacenter: str = "dc1",
        node: str = "pilotfish-node",
        node_address: str = "127.0.0.1",
        acl_tokens: Mapping[str, AclToken] | None = None,
        seed: int = 0,
    ) -> None:
        self.state = ConsulState(datacenter)
        self.node = node
        self.acl_tokens = dict(acl_tokens) if acl_tokens is not None else None
        self.requests: list[RecordedRequest] = []
        self.port = 0
        self._faults: dict[str, Fault] = {}
        self._rng = random.Random(seed)
        self._changed = asyncio.Event()
        self._abandoned = asyncio.Event()
        self._release = asyncio.Event()
        self._recorded = asyncio.Event()
        self._ttl_timers: dict[str, asyncio.TimerHandle] = {}
        self._runner: web.AppRunner | None = None
        self.state.ensure_node(node, node_address)

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> ConsulDouble:
        app = web.Application(middlewares=[self._record, self._errors, self._faulty])
        app.add_routes(
            [
                web.get(HEALTH_PATH + "{name}", self._health_service),
                web.put("/v1/agent/service/register", self._register),
                web.put("/v1/agent/service/deregister/{id}", self._deregister),
                web.put("/v1/agent/service/maintenance/{id}", self._maintenance),
                web.get("/v1/agent/service/{id}", self._agent_service),
                web.get("/v1/agent/services", self._agent_services),
                web.get("/v1/agent/checks", self._agent_checks),
                web.put("/v1/agent/check/{verb:pass|warn|fail}/{id}", self._ttl_verb),
                web.put("/v1/agent/check/update/{id}", self._ttl_update),
            ]
        )
        # aiohttp's default lets a busy handler hold up cleanup for 60 s before cancelling it
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=STOP_WITHIN)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        # set, not replaced (as _wake does): a request arriving from now on is not held either
        self._release.set()
        self._changed.set()
        self._abandoned.set()
        for timer in self._ttl_timers.values():
            timer.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> ConsulDouble:
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- test controls -------------------------------------------------------------------
    def add_instance(
        self,
        service: str,
        service_id: str,
        *,
        port: int,
        address: str = "",
        node: str = "node-a",
        node_address: str = "10.0.0.1",
        tags: Sequence[str] = (),
        meta: Mapping[str, str] | None = None,
        weights: Mapping[str, int] | None = None,
        tagged_addresses: Mapping[str, Mapping[str, Any]] | None = None,
        status: str = PASSING,
    ) -> None:
        """An instance registered on another agent's node, with one check in ``status``."""
        self.state.ensure_node(node, node_address)
        svc = ServiceState(node, service_id, service, address, port, list(tags), dict(meta or {}))
        if weights is not None:
            svc.weights = dict(weights)
        svc.tagged_addresses = {k: dict(v) for k, v in (tagged_addresses or {}).items()}
        self.state.put_service(svc)
        check = CheckState(node, f"service:{service_id}", f"Service '{service}' check", status)
        check.service_id, check.service_name, check.service_tags = service_id, service, list(tags)
        self.state.put_check(check)
        self._wake()

    def remove_instance(self, service_id: str, node: str = "node-a") -> None:
        self.state.remove_service(node, service_id)
        self._wake()

    def set_check_status(self, check_id: str, status: str, node: str = "node-a") -> None:
        self.state.set_status(self.state.checks[(node, check_id)], status, "")
        self._wake()

    def rewind_index(self, to: int) -> None:
        """Restore an older snapshot: indexes go back, blocked queries return at once."""
        self.state.rewind(to)
        self._wake(abandon=True)

    def restart_agent(self) -> None:
        """The local agent restarts with no registrations (they were made over HTTP)."""
        for key, svc in list(self.state.services.items()):
            if svc.local:
                self.state.remove_service(*key)
        for check_id in list(self._ttl_timers):
            self._ttl_timers.pop(check_id).cancel()
        self._wake()

    def inject(self, fault: Fault, path_prefix: str = HEALTH_PATH) -> None:
        self._faults[path_prefix] = fault

    def clear_faults(self) -> None:
        self._faults.clear()
        self._release.set()
        self._release = asyncio.Event()

    def local_check(self, check_id: str) -> CheckState | None:
        return self.state.checks.get((self.node, check_id))

    def local_service(self, service_id: str) -> ServiceState | None:
        return self.state.services.get((self.node, service_id))

    def health_requests(self, service: str) -> list[RecordedRequest]:
        return [r for r in self.requests_to(HEALTH_PATH) if r.path == HEALTH_PATH + service]

    def requests_to(self, path_prefix: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.startswith(path_prefix)]

    async def wait_requests(
        self, count: int, path_prefix: str = HEALTH_PATH, timeout: float = 5.0
    ) -> list[RecordedRequest]:
        """Once ``count`` requests under ``path_prefix`` have arrived, all of them.

        A client loop that sends its next request has finished handling the previous answer,
        so this is how tests wait for a client to have seen a reply.
        """
        try:
            async with asyncio.timeout(timeout):
                while len(self.requests_to(path_prefix)) < count:
                    await self._recorded.wait()
        except TimeoutError:
            got = len(self.requests_to(path_prefix))
            raise TimeoutError(
                f"{got} of {count} requests to {path_prefix} arrived within {timeout}s"
            ) from None
        return self.requests_to(path_prefix)

    # -- plumbing ------------------------------------------------------------------------
    def _wake(self, *, abandon: bool = False) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
        if abandon:
            self._abandoned.set()
            self._abandoned = asyncio.Event()

    def _headers(self, index: int | None = None) -> dict[str, str]:
        headers = {
            "X-Consul-Effective-Consistency": "leader",
            "X-Consul-KnownLeader": "true",
            "X-Consul-LastContact": "0",
            "X-Consul-Default-ACL-Policy": "deny" if self.acl_tokens is not None else "allow",
        }
        if index is not None:
            headers["X-Consul-Index"] = str(max(index, 1))  # agent/http.go setIndex
        return headers

    def _json(self, body: object, index: int | None = None) -> web.Response:
        return web.json_response(body, headers=self._headers(index))

    def _ok(self) -> web.Response:
        self._wake()
        return web.Response(status=200, headers=self._headers())

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.text() if request.can_read_body else ""
        query = tuple(request.query.items())
        self.requests.append(
            RecordedRequest(request.method, request.path, query, dict(request.headers), body)
        )
        self._recorded.set()
        self._recorded = asyncio.Event()
        return await handler(request)

    @web.middleware
    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return web.Response(status=exc.status, text=exc.text, content_type="text/plain")

    @web.middleware
    async def _faulty(self, request: web.Request, handler: Any) -> web.StreamResponse:
        fault = next((f for p, f in self._faults.items() if request.path.startswith(p)), None)
        if fault is Fault.ERROR_500:
            raise ApiError(500, "rpc error making call: No cluster leader")
        if fault is Fault.HANG:
            await self._release.wait()
            raise ApiError(500, "rpc error making call: EOF")
        if fault is Fault.BAD_JSON:
            body = '[{"Node": {"Node": "node-a", "Address": '
            headers = self._headers(self.state.raft_index)
            return web.Response(text=body, content_type="application/json", headers=headers)
        return await handler(request)

    def _token(self, request: web.Request) -> AclToken:
        return request_token(self.acl_tokens, request.query, request.headers)

    def _writer(self, request: web.Request, service: str) -> None:
        token = self._token(request)
        if not token.write:
            raise permission_denied(token.accessor_id, "service:write", service)

    # -- health --------------------------------------------------------------------------
    async def _health_service(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        token = self._token(request)
        query = request.query
        try:
            index = int(query.get("index", "0"))
            if index < 0:
                raise ValueError
        except ValueError:
            raise ApiError(400, "Invalid index") from None
        try:
            wait = parse_go_duration(query["wait"]) if "wait" in query else 0.0
        except ValueError:
            raise ApiError(400, "Invalid wait time") from None
        passing = query.get("passing")
        if passing not in (None, "") and passing not in TRUE | FALSE:
            raise ApiError(400, "Invalid value for ?passing")
        dc = query.get("dc")
        if dc and dc != self.state.datacenter:
            headers = {**self._headers(1), "X-Consul-KnownLeader": "false"}
            return web.Response(status=500, text="No path to datacenter", headers=headers)
        zero_bug = self._faults.get(HEALTH_PATH) is Fault.ZERO_INDEX
        if index > 0:
            await self._block(name, index, wait, zero_bug)
        entries = [self.state.health_entry(s) for s in self.state.instances(name)]
        wanted = query.getall("tag", [])
        entries = [e for e in entries if all(t in e["Service"]["Tags"] for t in wanted)]
        if passing is not None and passing not in FALSE:
            entries = [e for e in entries if all(c["Status"] == PASSING for c in e["Checks"])]
        if token is ANONYMOUS:
            entries = []  # default deny: unreadable results are filtered, not refused
        if zero_bug:
            return web.json_response(entries, headers={**self._headers(), "X-Consul-Index": "0"})
        return self._json(entries, self.state.service_index(name))

    async def _block(self, name: str, index: int, wait: float, zero_bug: bool) -> None:
        loop = asyncio.get_running_loop()
        timeout = DEFAULT_WAIT if wait <= 0 else min(wait, MAX_WAIT)
        deadline = loop.time() + timeout + self._rng.uniform(0, timeout / 16)
        abandoned = self._abandoned
        while (0 if zero_bug else self.state.service_index(name)) <= index:
            remaining = deadline - loop.time()
            if remaining <= 0 or abandoned.is_set():
                return
            waiters = [asyncio.ensure_future(e.wait()) for e in (self._changed, abandoned)]
            try:
                await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            finally:  # also when stop() cancels this handler
                for waiter in waiters:
                    waiter.cancel()

    # -- agent services ------------------------------------------------------------------
    async def _register(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.text())
        except ValueError:
            raise ApiError(400, "Request decode failed: invalid JSON") from None
        service, check_def = service_from_registration(body, self.node)
        self._writer(request, service.name)
        check = None
        if isinstance(check_def, dict) and check_def:
            check = check_from_definition(check_def, service)
        self._drop_timer(f"service:{service.service_id}")
        self.state.remove_service(self.node, service.service_id)
        self.state.put_service(service)
        if check is not None:
            self.state.put_check(check)
            if check.ttl is not None:
                self._arm_ttl(check)
        return self._ok()

    async def _deregister(self, request: web.Request) -> web.Response:
        service_id = request.match_info["id"]
        self._token(request)
        svc = self.local_service(service_id)
        if svc is None:
            raise unknown_service(service_id)
        self._writer(request, svc.name)
        self.state.remove_service(self.node, service_id)
        self._drop_timer(f"service:{service_id}")
        return self._ok()

    async def _agent_service(self, request: web.Request) -> web.Response:
        service_id = request.match_info["id"]
        token = self._token(request)
        svc = self.local_service(service_id)
        if svc is None:
            raise ApiError(404, f"unknown service ID: {service_id}")
        if token is ANONYMOUS:
            raise permission_denied(token.accessor_id, "service:read", svc.name)
        body = agent_service_json(svc, self.state.datacenter)
        body["ContentHash"] = f"{abs(hash(json.dumps(body, sort_keys=True))):016x}"[:16]
        return self._json(body)

    async def _agent_services(self, request: web.Request) -> web.Response:
        token = self._token(request)
        local = [s for s in self.state.services.values() if s.local and token is not ANONYMOUS]
        dc = self.state.datacenter
        return self._json({s.service_id: agent_service_json(s, dc) for s in local})

    async def _agent_checks(self, request: web.Request) -> web.Response:
        token = self._token(request)
        local = [c for c in self.state.checks.values() if c.local and token is not ANONYMOUS]
        return self._json({c.check_id: check_json(c) for c in local})

    async def _maintenance(self, request: web.Request) -> web.Response:
        service_id = request.match_info["id"]
        self._token(request)
        enable = request.query.get("enable")
        if enable is None:
            raise ApiError(400, "Missing value for enable")
        if enable not in TRUE | FALSE:
            raise ApiError(400, "Invalid value for enable")
        svc = self.local_service(service_id)
        if svc is None:
            raise unknown_service(service_id)
        self._writer(request, svc.name)
        check_id = f"_service_maintenance:{service_id}"
        if enable in TRUE:
            check = CheckState(self.node, check_id, "Service Maintenance Mode", CRITICAL)
            check.notes = request.query.get("reason") or DEFAULT_MAINTENANCE_REASON
            check.service_id, check.service_name = service_id, svc.name
            check.service_tags, check.type, check.local = list(svc.tags), "maintenance", True
            self.state.put_check(check)
        else:
            self.state.remove_check(self.node, check_id)
        return self._ok()

    # -- TTL checks ----------------------------------------------------------------------
    async def _ttl_verb(self, request: web.Request) -> web.Response:
        status = {"pass": PASSING, "warn": WARNING, "fail": CRITICAL}[request.match_info["verb"]]
        return self._ttl_set(request, status, request.query.get("note", ""))

    async def _ttl_update(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.text() or "{}")
        except ValueError:
            raise ApiError(400, "Request decode failed: invalid JSON") from None
        status = json_field(body, "Status") if isinstance(body, dict) else None
        if status not in STATUSES:
            raise ApiError(400, f'Invalid check status: "{status}"')
        return self._ttl_set(request, status, str(json_field(body, "Output") or ""))

    def _ttl_set(self, request: web.Request, status: str, output: str) -> web.Response:
        check_id = request.match_info["id"]
        self._token(request)
        check = self.local_check(check_id)
        if check is None:
            raise unknown_check(check_id)
        self._writer(request, check.service_name)
        if check.ttl is None:
            raise ApiError(500, f'CheckID "{check_id}" does not have associated TTL')
        self.state.set_status(check, status, output[:4096])
        self._arm_ttl(check)
        return self._ok()

    def _arm_ttl(self, check: CheckState) -> None:
        assert check.ttl is not None
        self._drop_timer(check.check_id)
        loop = asyncio.get_running_loop()
        self._ttl_timers[check.check_id] = loop.call_later(check.ttl, self._expire, check)

    def _drop_timer(self, check_id: str) -> None:
        if (timer := self._ttl_timers.pop(check_id, None)) is not None:
            timer.cancel()

    def _expire(self, check: CheckState) -> None:
        self._ttl_timers.pop(check.check_id, None)
        if self.local_check(check.check_id) is check:
            self.state.set_status(check, CRITICAL, "TTL expired")
            self._wake()


@pytest.fixture
async def consul_double() -> AsyncIterator[ConsulDouble]:
    """A started ``ConsulDouble`` with ACLs disabled."""
    async with ConsulDouble() as double:
        yield double
