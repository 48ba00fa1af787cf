"""Active health checking: probe every endpoint of a cluster and feed the verdicts.

One ``HealthChecker`` per cluster that has a ``health_check`` section. Its task probes every
current member at once, feeds each result to ``cluster.health.record(id, ok)`` (the pure
``HealthTable`` turns results into verdicts with its thresholds), then sleeps the jittered
interval and starts again. The first round runs as soon as the checker starts, so an
endpoint that begins ``unhealthy`` becomes routable after ``healthy_threshold`` probes, not
after that many intervals.

Probes: ``http`` sends ``GET path`` (``Host``, ``User-Agent``, ``Accept: */*``,
``Connection: close``) through the checker's own ``H1Transport``, the client upstream
traffic uses, on a fresh connection each time so a probe meets what a new request would
meet. It passes when the status lies in ``expected_statuses`` and the answer arrives whole;
the body is read and dropped, and after ``BODY_LIMIT`` bytes the rest is not waited for.
``tcp`` passes when a connection opens. Each probe, body included, is bounded by ``timeout``.

Invariants: a probe never raises (a timeout, a refused or reset connection, a malformed
answer, any error is a failed probe); its connection is closed when it ends, whatever the
outcome, so nothing stays open between probes; a round never takes longer than ``timeout``
plus a little; the loop survives any error in a round and ends only when its task is
cancelled, closing its transport on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable

from discovery.model import Endpoint
from resilience.health import Transition, jittered_interval
from sidecar.cluster import Cluster
from sidecar.config.policies import HealthCheckConfig
from sidecar.pipeline.errors import ProxyError
from sidecar.transport.h1_client import H1Response, H1Transport
from sidecar.transport.request_head import RequestHead

log = logging.getLogger("pilotfish.health")

USER_AGENT = "pilotfish-health-check"
# Body bytes a passing probe reads before it stops waiting for the rest: a health answer is
# small, and a huge or endless one must not hold the probe until its timeout.
BODY_LIMIT = 64 * 1024

TransitionCallback = Callable[[str, Transition], None]


class HealthChecker:
    """Probes the members of one cluster forever; run ``run()`` as a task."""

    def __init__(
        self,
        cluster: Cluster,
        config: HealthCheckConfig,
        *,
        uneject: bool = True,
        rng: random.Random,
    ) -> None:
        if cluster.health is None:
            raise ValueError(f"cluster {cluster.name!r} keeps no health verdicts")
        self.cluster = cluster
        self.config = config
        self._rng = rng
        # Envoy's successful_active_health_check_uneject_host: a pass ends an ejection.
        self._uneject = uneject
        # Nothing is pooled (idle_timeout 0) and the probe's own timeout bounds the connect.
        self._transport = H1Transport(connect_timeout=0, idle_timeout=0)
        self._head = _probe_head(config)
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
            await self.close()

    async def close(self) -> None:
        """Drop any probe connection still open; a later probe opens a new one."""
        await self._transport.close()

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
        except (TimeoutError, OSError, ProxyError) as exc:
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
        cluster = self.cluster
        if ok and self._uneject and cluster.outlier is not None:
            cluster.outlier.uneject(endpoint_id)  # told as an event by the cluster
        if transition is None:
            return
        cluster.availability_changed()
        state = cluster.states.get(endpoint_id)
        cluster.events.publish(
            "endpoint_healthy" if transition.healthy else "endpoint_unhealthy",
            cluster=cluster.name,
            endpoint=endpoint_id,
            endpoint_name=state.endpoint.name if state is not None else None,
        )
        for callback in self.on_transition:
            try:
                callback(endpoint_id, transition)
            except Exception:  # a listener's bug must not stop the probes
                log.exception("health transition callback failed")

    async def _probe_http(self, endpoint: Endpoint) -> bool:
        http = self.config.http
        assert http is not None and self._head is not None
        response = await self._transport.send(endpoint, self._head, None)
        try:
            if not any(lo <= response.status <= hi for lo, hi in http.expected_statuses):
                return False
            await _drop_body(response)
            return True
        finally:
            response.close()  # a fresh connection per probe: never kept for the next one

    async def _probe_tcp(self, endpoint: Endpoint) -> bool:
        _, writer = await asyncio.open_connection(endpoint.address, endpoint.port)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True


def _probe_head(config: HealthCheckConfig) -> RequestHead | None:
    """The probe's request, built once; ``None`` for a TCP check."""
    if config.http is None:
        return None
    headers: list[tuple[str, str]] = []
    if config.http.host:
        headers.append(("Host", config.http.host))  # else the transport names the endpoint
    headers += [("User-Agent", USER_AGENT), ("Accept", "*/*"), ("Connection", "close")]
    return RequestHead.of("GET", config.http.path, headers)


async def _drop_body(response: H1Response) -> None:
    """Read the body to its end, or until ``BODY_LIMIT`` bytes, and forget it."""
    read = 0
    async with contextlib.aclosing(response.iter_chunks()) as chunks:
        async for chunk in chunks:
            read += len(chunk)
            if read >= BODY_LIMIT:
                return


def health_checker(cluster: Cluster, *, rng: random.Random) -> HealthChecker | None:
    """The checker a cluster's configuration asks for, if any."""
    config = cluster.config
    if config is None or config.health_check is None or cluster.health is None:
        return None
    od = config.outlier_detection
    uneject = od is not None and od.successful_active_health_check_uneject_host
    return HealthChecker(cluster, config.health_check, uneject=uneject, rng=rng)
