"""Runs a docs page's runnable commands in order, as a reader would in a fresh directory.

* ``pilotfish check-config FILE`` and ``pilotfish run --config FILE`` run as
  ``python -m sidecar``, with the command's environment assignments, on FILE written from the
  page's config block (``doc_commands.config_for``); check-config must exit 0.
* ``run`` listens on the documented ports when they are free and on ephemeral ones
  otherwise; Consul is a Consul API double (with one instance of every service the config
  discovers there) and the trace collector an OTLP receiver, both standing in for the
  documented ``127.0.0.1:8500`` / ``localhost:4318``. It must turn ready; a config that
  registers must register at the inbound listener; a traced sidecar must export the span of
  a request it answered itself; on SIGTERM it must drain and exit 0.
* ``curl -s URL`` asks the sidecar started last and wants a 200.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import yaml

from tests.discovery.consul_double import ConsulDouble
from tests.docs.doc_commands import CHECK, CURL, ROOT, RUN, Command, config_for
from tests.observability.otlp_receiver import SERVER, OtlpReceiver

DEFAULT_ADMIN_PORT = 15900  # listeners.admin when a config leaves it out
CONSUL_PORT, OTLP_PORT = 8500, 4318  # where the docs' Consul agent and collector listen


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
        return True


def ephemeral_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listen_ports(config: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str, int]]:
    """(mapping, key, port) of every port the sidecar will listen on."""
    listeners = config.setdefault("listeners", {})
    listeners.setdefault("admin", {"address": "127.0.0.1", "port": DEFAULT_ADMIN_PORT})
    for spec in listeners.values():
        yield spec, "port", int(spec["port"])
    for upstream in config.get("upstreams") or []:
        if "listen" in upstream:
            yield upstream, "listen", int(str(upstream["listen"]).rpartition(":")[2])


def remap_ports(config: dict[str, Any]) -> dict[int, int]:
    """Moves listeners off documented ports that are taken; returns documented -> actual."""
    moved: dict[int, int] = {}
    for spec, key, port in list(listen_ports(config)):
        actual = moved.setdefault(port, port if port_is_free(port) else ephemeral_port())
        if key == "listen":
            spec[key] = f"{str(spec[key]).rpartition(':')[0]}:{actual}"
        else:
            spec[key] = actual
    return moved


def rewrite_address(value: str, port: int, actual: str) -> str:
    return re.sub(rf"(?:localhost|127\.0\.0\.1):{port}\b", actual, value)


@dataclass
class Running:
    proc: asyncio.subprocess.Process
    config: dict[str, Any]
    ports: dict[int, int]
    env: dict[str, str]
    log: Path

    def port(self, listener: str) -> int:
        spec = self.config["listeners"][listener]
        return int(spec["port"])


class PageRun:
    """Runs one page's runnable commands in order, as a reader would in a fresh directory."""

    def __init__(self, workdir: Path, consul: ConsulDouble, otlp: OtlpReceiver) -> None:
        self.workdir = workdir
        self.consul = consul
        self.otlp = otlp
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self.running: Running | None = None
        self.seeded: set[str] = set()  # services given an instance in the Consul double

    async def execute(self, command: Command) -> None:
        if m := CHECK.fullmatch(command.text):
            await self.check_config(command, m.group("file"))
        elif m := RUN.fullmatch(command.text):
            await self.run(command, m.group("file"), m.group("env"))
        elif m := CURL.fullmatch(command.text):
            await self.curl(command, m.group("url"))
        else:
            raise AssertionError(f"{command}: not runnable")

    async def check_config(self, command: Command, file: str) -> None:
        (self.workdir / file).write_text(config_for(command), encoding="utf-8")
        proc = await self.pilotfish("check-config", file, env=self.base_env())
        out, err = await asyncio.wait_for(proc.communicate(), 15)
        assert proc.returncode == 0, f"{command}: exit {proc.returncode}\n{err.decode()}"
        assert out.decode().startswith(f"{file}: ok"), out.decode()

    async def run(self, command: Command, file: str, assignments: str) -> None:
        await self.stop()
        config = yaml.safe_load(config_for(command))
        ports = remap_ports(config)
        (self.workdir / file).write_text(yaml.safe_dump(config), encoding="utf-8")
        env = self.base_env()
        consul = self.consul.address
        otlp = f"127.0.0.1:{self.otlp.port}"
        for word in shlex.split(assignments):
            name, _, value = word.partition("=")
            value = rewrite_address(rewrite_address(value, CONSUL_PORT, consul), OTLP_PORT, otlp)
            env[name] = value
        # The reader's agent listens on Consul's default address; the double does not.
        env.setdefault("CONSUL_HTTP_ADDR", consul)
        for upstream in config.get("upstreams") or []:
            service = (upstream.get("discovery") or {}).get("consul", {}).get("service")
            if service and service not in self.seeded:
                self.consul.add_instance(service, f"{service}-1", port=9, address="127.0.0.1")
                self.seeded.add(service)
        log = self.workdir / "pilotfish.log"
        with log.open("wb") as sink:
            proc = await self.pilotfish("run", "--config", file, env=env, stderr=sink)
        self.running = Running(proc, config, ports, env, log)
        await self.wait_ready(command)
        if config["service"].get("register"):
            self.assert_registered_at_inbound(command)

    async def curl(self, command: Command, url: str) -> None:
        running = self.running
        assert running is not None, f"{command}: no sidecar was started before it"
        parts = urlsplit(url if url.startswith("http://") else f"http://{url}")
        documented = parts.port or 80
        actual = running.ports.get(documented, documented)
        target = parts._replace(netloc=f"{parts.hostname}:{actual}").geturl()
        async with self.http.get(target) as r:
            assert r.status == 200, f"{command}: {r.status} {await r.text()}"

    async def stop(self) -> None:
        """SIGTERM the sidecar started last; it drains and exits 0."""
        running, self.running = self.running, None
        if running is None:
            return
        traced = any(name.startswith("OTEL_EXPORTER_OTLP") for name in running.env)
        try:
            if traced:  # a request the sidecar answers itself, so there is a span to export
                await self.refused_connect(running)
            running.proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(running.proc.wait(), 15)
        finally:
            if running.proc.returncode is None:  # a failed check must not leave it running
                running.proc.kill()
                await running.proc.wait()
        assert code == 0, running.log.read_text(errors="replace")
        if traced:  # the sidecar exports what is queued before it exits
            servers = [s for s in self.otlp.spans if s.kind == SERVER]
            assert [s.service for s in servers] == [running.config["service"]["name"]]
            assert servers[0].attributes["http.response.status_code"] == 400

    async def refused_connect(self, running: Running) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port("inbound"))
        writer.write(b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n")
        status = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
        assert status.startswith(b"HTTP/1.1 400 "), status

    async def wait_ready(self, command: Command) -> None:
        running = self.running
        assert running is not None
        ready = f"http://127.0.0.1:{running.port('admin')}/ready"
        async with asyncio.timeout(15):
            while True:
                if running.proc.returncode is not None:
                    raise AssertionError(f"{command}: exited\n{running.log.read_text()}")
                try:
                    async with self.http.get(ready) as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.05)  # polling another process's readiness

    def assert_registered_at_inbound(self, command: Command) -> None:
        running = self.running
        assert running is not None
        bodies = [json.loads(r.body) for r in self.consul.requests_to("/v1/agent/service/register")]
        assert bodies, f"{command}: nothing registered"
        inbound = running.port("inbound")
        service = running.config["service"]
        assert bodies[-1]["Name"] == service["name"]
        assert bodies[-1]["Port"] == inbound
        if (service.get("check") or {}).get("http"):  # Consul probes through the sidecar
            assert bodies[-1]["Check"]["HTTP"].endswith(f":{inbound}{service['check']['http']}")

    def base_env(self) -> dict[str, str]:
        """This process's environment without Consul's and OpenTelemetry's variables."""
        return {k: v for k, v in os.environ.items() if not k.startswith(("CONSUL_", "OTEL_"))}

    async def pilotfish(
        self, *args: str, env: dict[str, str], stderr: Any = None
    ) -> asyncio.subprocess.Process:
        """``python -m sidecar ARGS``: stdout and stderr piped, or stderr to ``stderr``."""
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sidecar",
            *args,
            cwd=self.workdir,
            env={**env, "PYTHONPATH": str(ROOT)},
            stdout=asyncio.subprocess.PIPE if stderr is None else asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE if stderr is None else stderr,
        )

    async def close(self) -> None:
        try:
            await self.stop()
        finally:
            await self.http.close()


@asynccontextmanager
async def page_run(workdir: Path) -> AsyncIterator[PageRun]:
    consul = await ConsulDouble().start()
    otlp = await OtlpReceiver().start()
    run = PageRun(workdir, consul, otlp)
    try:
        yield run
    finally:
        try:
            await run.close()
        finally:
            await otlp.stop()
            await consul.stop()
