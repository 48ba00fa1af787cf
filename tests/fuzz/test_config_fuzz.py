"""Mutated configurations: refused with errors by path, or accepted and buildable.

Starting from a configuration that sets nearly every key, each case replaces or deletes
one to three values (with wrong types, zero, negative, huge, empty, NaN, CR/LF, ...) and
sets a few environment variables the loader reads. Loading must either succeed or raise
``ConfigError`` whose every line names the key at fault; a configuration it accepts must
build its clusters, discovery sources and tracing without an exception, so that nothing
the loader lets through can crash the start.
"""

from __future__ import annotations

import contextlib
import copy
import random
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from sidecar.app import Sidecar
from sidecar.config.load import ConfigError, load_data

BASE = yaml.safe_load("""
service:
  name: frontend
  address: 127.0.0.1
  port: 8080
  register: true
  tags: [demo]
  meta: {team: web}
  check: {http: /health, interval: 2s, timeout: 1s, deregister_critical_after: 1m}
listeners:
  inbound: {address: 127.0.0.1, port: 15000}
  admin: {address: 127.0.0.1, port: 15900}
upstreams:
  - name: orders
    listen: 127.0.0.1:9001
    discovery:
      consul: {service: orders, passing_only: true, tags: [a], datacenter: dc1, wait: 55s,
               min_interval: 15s}
    balancer:
      policy: ring_hash
      hash_on: header:x-user
      ring: {min_ring_size: 64, max_ring_size: 4096}
    timeouts: {connect: 500ms, total: 5s, idle: 4s, stream_idle: 1m}
    retries:
      attempts: 2
      retry_on: [connect-failure, reset, retriable-status-codes]
      retriable_status_codes: [503]
      per_try_timeout: 2s
      backoff: {base: 25ms, max: 250ms}
      budget: {ratio: 0.2, min_per_second: 10, window: 10s}
      max_replay_bytes: 64KiB
    circuit_breakers:
      max_requests: 10
      max_pending: 10
      max_connections: 5
      endpoint: {fail_max: 5, reset_timeout: 30s, success_threshold: 1}
    outlier_detection:
      consecutive_5xx: 5
      consecutive_gateway_failure: 5
      consecutive_local_origin_failure: 5
      base_ejection_time: 30s
      max_ejection_time: 5m
      max_ejection_percent: 50
    health_check:
      http: {path: /health, expected_statuses: [200, 200-399], host: h}
      interval: 5s
      timeout: 1s
      jitter: 10%
      healthy_threshold: 2
      unhealthy_threshold: 3
      initial_state: healthy
    request_headers: {add: {x-a: b}, remove: [x-c]}
    response_headers: {add: {x-b: c}, remove: [server]}
  - name: payments
    listen: 127.0.0.1:9002
    discovery:
      dns_srv:
        name: _payments._tcp.example
        nameservers: [127.0.0.1:53]
        refresh: {min: 1s, max: 60s}
        timeout: 2s
    balancer: {policy: least_request}
  - name: static
    listen: 127.0.0.1:9003
    discovery: {static: [127.0.0.1:1, {address: 127.0.0.1, port: 2, weight: 3}]}
    balancer: {policy: weighted_round_robin}
consul: {address: 127.0.0.1:8500, token: x}
tracing:
  sampler: parentbased_traceidratio
  sampler_arg: 0.1
  endpoint: http://127.0.0.1:4318/v1/traces
access_log: {enabled: false}
""")
VALUES: tuple[Any, ...] = (
    None, -1, 0, 1, 2**70, -(2**70), 1.5, float("nan"), float("inf"), -0.0, True,
    "", " ", "x", "-1s", "0s", "1e400s", "999999999999999999999d", "1e3", "nan",
    [], {}, [None], [1, 2], ["x"], {"a": 1}, "127.0.0.1:99999", ":0", "[::1]:80",
    "\x00", "a\r\nb", "é", "http://", "ring_hash",
)  # fmt: skip
VARIABLES = (
    "CONSUL_HTTP_ADDR", "CONSUL_HTTP_TOKEN", "CONSUL_HTTP_SSL", "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_SERVICE_NAME", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_BSP_SCHEDULE_DELAY", "OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_EXPORT_TIMEOUT",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
)  # fmt: skip
CASES = 500
DELETE = object()  # a replacement that removes the key


def _paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if path:
        yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*path, i))


def _replaced(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    if value is DELETE:
        if isinstance(parent, dict):
            del parent[path[-1]]
    else:
        parent[path[-1]] = copy.deepcopy(value)


async def _refused_by_path_or_built(
    doc: dict[str, Any], environ: dict[str, str], *, tracing: bool = True
) -> bool:
    """True when ``doc`` was accepted (and built), False when refused with errors by path.
    ``tracing``: also build tracing (a thread and an exporter: the slowest part)."""
    try:
        config = load_data(copy.deepcopy(doc), environ)
    except ConfigError as exc:
        for line in exc.errors:
            assert ": " in line and line.split(": ", 1)[1], (line, doc, environ)
        return False
    sidecar = Sidecar(config)
    sidecar.build()
    if tracing:
        sidecar.observer.open(sidecar)  # tracing: sampler, exporter, batch processor
        await sidecar.observer.close(timeout=0.1)
    return True


async def test_every_single_replacement_is_refused_by_path_or_builds():
    accepted = cases = 0
    for path in list(_paths(BASE)):
        for value in (*VALUES, DELETE):
            doc = copy.deepcopy(BASE)
            _replaced(doc, path, value)
            cases += 1
            tracing = path[0] in ("tracing", "service")  # what tracing is built from
            accepted += await _refused_by_path_or_built(doc, {}, tracing=tracing)
    assert 0 < accepted < cases


@pytest.mark.parametrize("seed", [1, 2])
async def test_mutated_configs_and_environments_are_refused_by_path_or_build(seed):
    rng = random.Random(seed)
    accepted = 0
    paths = list(_paths(BASE))
    for _ in range(CASES):
        doc = copy.deepcopy(BASE)
        for path in rng.sample(paths, rng.randint(1, 3)):
            # An earlier replacement may have removed or replaced this path's parent.
            with contextlib.suppress(KeyError, IndexError, TypeError):
                _replaced(doc, path, rng.choice((*VALUES, DELETE)))
        environ = {}
        if rng.random() < 0.5:
            environ[rng.choice(VARIABLES)] = str(rng.choice(VALUES))
        accepted += await _refused_by_path_or_built(doc, environ)
    assert 0 < accepted < CASES
