"""``DnsSrvSource``: a Source that follows a DNS SRV name (RFC 2782), e.g. Consul's DNS.

Each refresh asks the configured nameservers (``host:port``; IPv6 as ``[::1]:53``) for the SRV
records of ``name`` with aiodns. Target addresses come from the answer's additional section
when it carries them (Consul and dnsmasq do); targets left without an address are queried
for A and AAAA. The pure ``dns_parse`` turns the records into a snapshot, and the next refresh
comes after the smallest record TTL clamped to ``[refresh_min, refresh_max]`` (Consul answers
with TTL 0 by default, so ``refresh_min`` is the polling period there).

Any name is accepted as is: ``web.service.consul``, ``_web._tcp.service.consul`` and
``primary.web.service.consul`` are all just names to the resolver.

Failures (NXDOMAIN, SERVFAIL, no answer within ``timeout``, an SRV name with no SRV records,
malformed records) keep the last good snapshot, are recorded with ``watch.fail`` and retried
after a capped, jittered exponential backoff; the watch tells once when an outage starts
and once when it ends (``Watch.on_outage``). A name that never resolved leaves the watch
not ready. An A/AAAA lookup of a target that answers NXDOMAIN/no data just leaves that
target out; any other error fails the refresh.

Cancelling ``run`` always ends it: its waits are ``asyncio.timeout`` blocks, never
``asyncio.wait_for``, which on Python 3.11 can swallow a cancellation (CPython gh-86296).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Sequence
from typing import Any

import aiodns
import aiodns.error
import pycares

from discovery.dns_parse import answer_ttl, parse_srv_answer, refresh_delay, unresolved_targets
from discovery.errors import DiscoveryError
from discovery.hostport import join_host_port, split_host_port
from discovery.model import EndpointSet
from discovery.watch import Watch, endpoint_watch
from resilience.backoff import JitteredBackoff

DNS_PORT = 53
_NO_SUCH_RECORDS = frozenset({aiodns.error.ARES_ENOTFOUND, aiodns.error.ARES_ENODATA})
_ERROR_NAMES = {
    aiodns.error.ARES_ENOTFOUND: "NXDOMAIN",
    aiodns.error.ARES_ENODATA: "no records of that type",
    aiodns.error.ARES_ESERVFAIL: "SERVFAIL",
    aiodns.error.ARES_EREFUSED: "REFUSED",
    aiodns.error.ARES_ETIMEOUT: "timeout",
    aiodns.error.ARES_ECONNREFUSED: "connection refused",
}


class DnsSrvSource:
    """Publishes the endpoints behind an SRV name, refreshed at the record TTL."""

    def __init__(
        self,
        *,
        name: str,
        nameservers: Sequence[str] = ("127.0.0.1:8600",),
        refresh_min: float = 1.0,
        refresh_max: float = 60.0,
        timeout: float = 2.0,
        rng: random.Random | None = None,
        backoff_base: float = 0.1,
        backoff_cap: float = 10.0,
    ) -> None:
        if not name:
            raise ValueError("SRV name is empty")
        if not nameservers:
            raise ValueError("at least one nameserver is needed")
        if not 0 < refresh_min <= refresh_max:
            raise ValueError(
                f"need 0 < refresh_min <= refresh_max, got {refresh_min}, {refresh_max}"
            )
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        self.name = name
        self.nameservers = tuple(join_host_port(*split_host_port(s, DNS_PORT)) for s in nameservers)
        self.refresh_min = refresh_min
        self.refresh_max = refresh_max
        self.timeout = timeout
        self.watch: Watch[EndpointSet] = endpoint_watch(f"dns:{name}")
        self._backoff = JitteredBackoff(backoff_base, backoff_cap, rng or random.Random())
        self._resolver: aiodns.DNSResolver | None = None
        self._closed = asyncio.Event()

    async def run(self) -> None:
        # tries=1: the per-query timeout below bounds each attempt; the loop is the retry.
        resolver = aiodns.DNSResolver(
            nameservers=list(self.nameservers), timeout=self.timeout, tries=1
        )
        self._resolver = resolver
        try:
            while not self._closed.is_set():
                try:
                    snapshot, ttl = await self._resolve(resolver)
                except DiscoveryError as exc:
                    if self._closed.is_set():
                        return
                    self._failed(str(exc))
                    await self._pause(self._backoff.next())
                    continue
                self._succeeded(snapshot)
                await self._pause(refresh_delay(ttl, self.refresh_min, self.refresh_max))
        finally:
            await resolver.close()

    async def close(self) -> None:
        """Stop ``run`` (it returns at its next step) and release the resolver."""
        self._closed.set()
        if self._resolver is not None:
            await self._resolver.close()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._closed.wait()

    async def _resolve(self, resolver: aiodns.DNSResolver) -> tuple[EndpointSet, int]:
        srv = await self._query(resolver, self.name, "SRV")
        answer, additional = list(srv.answer), list(srv.additional)
        for target in unresolved_targets(answer, additional):
            found = await asyncio.gather(
                self._query(resolver, target, "A", missing_ok=True),
                self._query(resolver, target, "AAAA", missing_ok=True),
            )
            for result in found:
                if result is not None:
                    additional.extend(result.answer)
        return parse_srv_answer(answer, additional), answer_ttl(answer, additional)

    async def _query(
        self, resolver: aiodns.DNSResolver, name: str, qtype: str, *, missing_ok: bool = False
    ) -> Any:
        try:
            async with asyncio.timeout(self.timeout):
                return await resolver.query_dns(name, qtype)
        except TimeoutError:
            raise DiscoveryError(f"DNS {qtype} {name}: no answer within {self.timeout}s") from None
        except aiodns.error.DNSError as exc:
            code = exc.args[0] if exc.args else None
            if missing_ok and code in _NO_SUCH_RECORDS:
                return None
            reason = _ERROR_NAMES.get(code) or pycares.errno.errorcode.get(code, str(exc))
            raise DiscoveryError(f"DNS {qtype} {name}: {reason}") from None
        except ValueError as exc:  # aiodns rejects some names before sending
            raise DiscoveryError(f"DNS {qtype} {name}: {exc}") from None

    def _failed(self, message: str) -> None:
        self.watch.fail(message)  # the watch tells when an outage starts

    def _succeeded(self, snapshot: EndpointSet) -> None:
        self._backoff.reset()
        self.watch.publish(snapshot, now=time.time())  # and when it ends
