"""Active health checking: probe every endpoint of a cluster and feed the verdicts.

One ``HealthChecker`` per cluster that has a ``health_check`` section. Its task probes every
current member at once, feeds each result to ``cluster.health.record(id, ok)`` (the pure
``HealthTable`` turns results into verdicts with its thresholds), then sleeps the jittered
interval and starts again. The first round runs as soon as the checker starts, so an
endpoint that begins ``unhealthy`` becomes routable after ``healthy_threshold`` probes, not
after that many intervals.

Probes: ``http`` sends ``GET path`` with its own small ``ClientSession`` (a fresh connection
each time, so a probe meets what a new request would meet) and passes when the status lies
in ``expected_statuses``; ``tcp`` passes when a connection opens. Each probe is bounded by
``timeout``.

Invariants: a probe never raises (any error, including a timeout, is a failed probe); a
round never takes longer than ``timeout`` plus a little; the loop survives any error in a
round and ends only when its task is cancelled, closing its session on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterable

import aiohttp
from yarl import URL

from discovery.model import Endpoint
from resilience.health import Transition, jittered_interval
from sidecar.cluster import Cluster
from sidecar.config.policies import HealthCheckConfig

log = logging.getLogger("pilotfish.health")

USER_AGENT = "pilotfish-health-check"

TransitionCallback = Callable[[str, Transition], None]


class HealthChecker:
    """Probes the members of one cluster forever; run ``run()`` as a task."""

    def __init__(self, cluster: Cluster, *, rng: random.Random) -> None:
        config = cluster.config.health_check
        if config is None or cluster.health is None:
            raise ValueError(f"cluster {cluster.name!r} has no health_check configured")
        self.cluster = cluster
        self.config: HealthCheckConfig = config
        self._rng = rng
        od = cluster.config.outlier_detection
        self._uneject = od is not None and od.successful_active_health_check_uneject_host
        self._session: aiohttp.ClientSession | None = None
        self.on_transition: list[TransitionCallback] = []
        self.rounds = 0
        self.probes = 0
        self.failed_probes = 0

    async def run(self) -> None:
        try:
            while True:
                await self.probe_all()
                await asyncio.sleep(
                    jittered_interval(self.config.interval, self.config.jitter, self._rng)
                )
        finally:
            if self._session is not None:
                await self._session.close()
                self._session = None

    async def probe_all(self) -> None:
        """One round: probe every current member once, then record the results."""
        try:
            cluster = self.cluster
            endpoints = [cluster.states[i].endpoint for i in cluster.member_ids]
            results = await asyncio.gather(*(self.probe(ep) for ep in endpoints))
            for endpoint, ok in zip(endpoints, results, strict=True):
                self._record(endpoint.id, ok)
            self.rounds += 1
        except Exception:  # a bug in one round must not end health checking for good
            log.exception("health check round of cluster %s failed", self.cluster.name)

    async def probe(self, endpoint: Endpoint) -> bool:
        """Whether ``endpoint`` passes one probe; never raises except on cancellation."""
        self.probes += 1
        try:
            async with asyncio.timeout(self.config.timeout):
                if self.config.http is not None:
                    ok = await self._probe_http(endpoint)
                else:
                    ok = await self._probe_tcp(endpoint)
        except (TimeoutError, OSError, aiohttp.ClientError) as exc:
            log.debug("probe of %s failed: %r", endpoint.id, exc)
            ok = False
        except Exception:
            log.exception("probe of %s failed unexpectedly", endpoint.id)
            ok = False
        if not ok:
            self.failed_probes += 1
        return ok

    def _record(self, endpoint_id: str, ok: bool) -> None:
        health = self.cluster.health
        assert health is not None
        transition = health.record(endpoint_id, ok)
        if ok and self._uneject and self.cluster.outlier is not None \
                and self.cluster.outlier.uneject(endpoint_id):
            log.info("endpoint %s of cluster %s passed its health check: back from ejection",
                     endpoint_id, self.cluster.name)
        if transition is None:
            return
        log.warning(
            "endpoint %s of cluster %s is now %s",
            endpoint_id,
            self.cluster.name,
            "healthy" if transition.healthy else "unhealthy",
        )
        for callback in self.on_transition:
            try:
                callback(endpoint_id, transition)
            except Exception:  # a listener's bug must not stop the probes
                log.exception("health transition callback failed")

    async def _probe_http(self, endpoint: Endpoint) -> bool:
        http = self.config.http
        assert http is not None
        session = self._session or self._open()
        headers = {"User-Agent": USER_AGENT}
        if http.host:
            headers["Host"] = http.host
        target = URL(f"http://{endpoint.id}{http.path}", encoded=True)
        async with session.get(target, headers=headers, allow_redirects=False) as resp:
            return any(lo <= resp.status <= hi for lo, hi in http.expected_statuses)

    async def _probe_tcp(self, endpoint: Endpoint) -> bool:
        _, writer = await asyncio.open_connection(endpoint.address, endpoint.port)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    def _open(self) -> aiohttp.ClientSession:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True, limit=0, use_dns_cache=False),
            timeout=aiohttp.ClientTimeout(total=None),  # the probe's own timeout bounds it
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
        )
        return self._session


def health_checkers(clusters: Iterable[Cluster], *, rng: random.Random) -> dict[str, HealthChecker]:
    """A checker for every cluster that has a ``health_check`` section, by cluster name."""
    return {
        c.name: HealthChecker(c, rng=rng)
        for c in clusters
        if c.config.health_check is not None and c.health is not None
    }
