"""``pilotfish run`` registered in Consul and stopped by SIGTERM: the service is never
registered again after the signal, also when the signal arrives during start-up.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import aiohttp
import yaml

from tests.discovery.consul_double import ConsulDouble, Fault, consul_double  # noqa: F401
from tests.sidecar.process import free_port, wait_ready

REGISTER = "/v1/agent/service/register"
DEREGISTER = "/v1/agent/service/deregister/"
EXITS_WITHIN = 10.0


async def start(tmp_path: Path, consul: ConsulDouble) -> tuple[asyncio.subprocess.Process, int]:
    admin = free_port()
    config = {
        "service": {"name": "orders", "port": 1, "register": True, "check": {"ttl": "3s"}},
        "listeners": {
            "admin": {"address": "127.0.0.1", "port": admin},
            "inbound": {"address": "127.0.0.1", "port": free_port()},
        },
        "consul": {"address": consul.address},
        "upstreams": [
            {
                "name": "api",
                "listen": f"127.0.0.1:{free_port()}",
                "discovery": {"consul": {"service": "api", "wait": "1s"}},
            }
        ],
        "discovery_timeout": "20s",
        "access_log": {"enabled": False},
        "tracing": {"enabled": False},
    }
    path = tmp_path / "pilotfish.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sidecar", "run", "--config", str(path),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    return proc, admin


async def stopped(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(EXITS_WITHIN):
            _, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_sigterm_while_waiting_for_endpoints_never_registers(
    consul_double: ConsulDouble,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
):
    consul_double.inject(Fault.HANG)  # the first snapshot never comes: start-up waits
    proc, _ = await start(tmp_path, consul_double)
    await consul_double.wait_requests(1, timeout=EXITS_WITHIN)  # it is waiting for Consul
    code, err = await stopped(proc)
    assert code == 0, err
    assert "start abandoned" in err
    assert consul_double.requests_to(REGISTER) == []
    assert consul_double.requests_to("/v1/agent/") == []


async def test_sigterm_deregisters_last_and_nothing_registers_after_it(
    consul_double: ConsulDouble,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
):
    consul_double.add_instance("api", "api-1", port=9, address="127.0.0.1")
    proc, admin = await start(tmp_path, consul_double)
    async with aiohttp.ClientSession() as session:
        await wait_ready(session, admin, proc)
    registered = await consul_double.wait_requests(1, REGISTER)
    service_id = json.loads(registered[0].body)["ID"]
    # the agent forgets the service: run() would register it again at its next check
    consul_double.restart_agent()
    code, err = await stopped(proc)
    assert code == 0, err
    assert consul_double.local_service(service_id) is None
    agent_writes = [r.path for r in consul_double.requests if r.method == "PUT"]
    assert agent_writes[-1] == DEREGISTER + service_id
