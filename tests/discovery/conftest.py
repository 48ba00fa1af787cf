"""Fixtures for discovery tests: the Consul HTTP double and a real dnsmasq.

``dnsmasq`` runs the real binary (Debian package ``dnsmasq-base``) on 127.0.0.1 with a free
port, serving only the records a test passes (``--srv-host=`` / ``--host-record=``) and
answering NXDOMAIN for any other name under ``consul``. Readiness is established by querying
it (``version.bind`` in class CHAOS), never by sleeping. A missing binary fails the test
under CI and skips it elsewhere (``tests/system_tools.py``).
Start and stop are bounded: a dnsmasq that does not answer within ``READY_WITHIN`` seconds
or does not exit within ``EXIT_WITHIN`` seconds of SIGTERM (then SIGKILL) fails the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
from collections.abc import AsyncIterator, Sequence

import aiodns
import pytest

from tests.discovery.consul_double import consul_double  # noqa: F401  (re-exported fixture)
from tests.system_tools import require

READY_WITHIN = 5.0
EXIT_WITHIN = 5.0
QUERY_TIMEOUT = 0.2


def free_port() -> int:
    """A port free for UDP and TCP on 127.0.0.1 at the time of asking."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port found")


class Dnsmasq:
    """One dnsmasq process at a time, always on the same port once started."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self._process: asyncio.subprocess.Process | None = None

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(
        self,
        *,
        srv: Sequence[str] = (),
        hosts: Sequence[str] = (),
        ttl: int | None = None,
        extra: Sequence[str] = (),
    ) -> None:
        """Serve ``srv`` (``--srv-host`` values) and ``hosts`` (``--host-record`` values)."""
        args = [
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--pid-file=",
            f"--port={self.port}",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--local=/consul/",
            *(f"--srv-host={record}" for record in srv),
            *(f"--host-record={record}" for record in hosts),
            *extra,
        ]
        if ttl is not None:
            args.append(f"--local-ttl={ttl}")
        self._process = await asyncio.create_subprocess_exec(
            self.binary, *args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        await self._wait_ready()

    async def restart(self, **records: object) -> None:
        await self.stop()
        await self.start(**records)  # type: ignore[arg-type]

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(EXIT_WITHIN):
                await process.wait()
        if process.returncode is None:
            process.kill()
            try:
                async with asyncio.timeout(EXIT_WITHIN):
                    await process.wait()
            except TimeoutError:
                raise RuntimeError(f"dnsmasq (pid {process.pid}) survived SIGKILL") from None

    async def _wait_ready(self) -> None:
        assert self._process is not None
        resolver = aiodns.DNSResolver(nameservers=[self.nameserver], timeout=QUERY_TIMEOUT, tries=1)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_WITHIN
        try:
            while True:
                if self._process.returncode is not None:
                    raise RuntimeError(
                        f"dnsmasq exited with {self._process.returncode}: {await self._stderr()}"
                    )
                try:
                    # c-ares times the query out itself; the bound here does not rely on it
                    async with asyncio.timeout(QUERY_TIMEOUT * 5):
                        await resolver.query_dns("version.bind", "TXT", "CHAOS")
                    return
                except (aiodns.error.DNSError, TimeoutError) as exc:
                    if loop.time() > deadline:
                        raise RuntimeError(
                            f"dnsmasq on {self.nameserver} not answering after "
                            f"{READY_WITHIN}s: {exc!r}"
                        ) from None
                    # c-ares answers "connection refused" at once: pace the polling a little
                    await asyncio.sleep(0.01)
        finally:
            await resolver.close()

    async def _stderr(self) -> str:
        """What an exited dnsmasq wrote to stderr (bounded: a leftover child may hold it)."""
        assert self._process is not None and self._process.stderr is not None
        try:
            async with asyncio.timeout(1.0):
                return (await self._process.stderr.read()).decode(errors="replace")
        except TimeoutError:
            return "<stderr not closed>"


@pytest.fixture
async def dnsmasq() -> AsyncIterator[Dnsmasq]:
    server = Dnsmasq(require("dnsmasq"))
    yield server
    await server.stop()
