"""Config parsing: shapes, defaults, units, environment, and error messages by path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sidecar.config import ConfigError, load_text, redacted
from sidecar.config.units import parse_duration, parse_size

EXAMPLE = """
service: {name: orders, address: 127.0.0.1, port: 8080}
listeners:
  inbound: {address: 0.0.0.0, port: 15000}
  admin:   {address: 127.0.0.1, port: 15900}
upstreams:
  - name: payments
    listen: 127.0.0.1:9191
    discovery: {static: [10.0.0.5:8080, {address: 10.0.0.6, port: 8080, weight: 3}]}
    balancer: {policy: ring_hash, hash_on: "header:x-user-id"}
    request_headers: {add: {x-via: pilotfish}, remove: [x-internal]}
    rewrite: {host: payments.internal, strip_prefix: /api}
"""


def errors_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_text(text, environ=env or {})
    return info.value.errors


def test_the_documented_example_parses_with_envoy_defaults():
    cfg = load_text(EXAMPLE, environ={})
    up = cfg.upstreams[0]
    assert up.listen is not None and (up.listen.host, up.listen.port) == ("127.0.0.1", 9191)
    assert [(e.address, e.port, e.weight) for e in up.discovery.static] == [
        ("10.0.0.5", 8080, 1),
        ("10.0.0.6", 8080, 3),
    ]
    assert str(up.balancer.hash_on) == "header:x-user-id"
    assert up.request_headers.add == {"x-via": "pilotfish"}
    assert up.rewrite.strip_prefix == "/api"
    assert up.retries.attempts == 2 and up.retries.per_try_timeout == 1.0
    assert up.retries.max_replay_bytes == 64 * 1024
    assert up.timeouts.total == 15.0 and up.timeouts.idle == 4.0
    assert up.circuit_breakers.max_requests == 1024
    assert up.outlier_detection is not None and up.outlier_detection.max_ejection_percent == 50
    assert up.panic_threshold == 50
    assert cfg.drain_timeout == 10.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("5s", 5.0), ("1m", 60.0), ("1h30m", 5400.0), (2, 2.0), ("1.5s", 1.5)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["5", "5 s", "s", "-1s", "", True, [1]])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("text", "size"), [("64KiB", 65536), ("1MiB", 1048576), ("1kb", 1000), (512, 512), ("10B", 10)]
)
def test_sizes(text, size):
    assert parse_size(text) == size


def test_every_error_is_reported_by_path_with_did_you_mean():
    errors = errors_of("""
service: {name: s, port: 1}
upstreams:
  - name: ok
    listen: 127.0.0.1:1
    discovery: {static: [127.0.0.1:2]}
  - name: bad
    listen: 127.0.0.1:3
    discovery: {static: [10.0.0.5:99999]}
    balancer: {policy: fastest}
    retires: {}
    retries: {attempts: -1, per_try_timeout: 5q, retry_on: [sometimes]}
    timeouts: {conect: 1s}
""")
    assert errors == [
        "upstreams[1].retires: unknown key; did you mean 'retries'?",
        "upstreams[1].discovery.static[0]: port must be in 1..65535, got 99999",
        "upstreams[1].balancer.policy: unknown policy 'fastest'; expected one of: "
        "least_request, random, ring_hash, round_robin, weighted_round_robin",
        "upstreams[1].timeouts.conect: unknown key; did you mean 'connect'?",
        "upstreams[1].retries.attempts: must be >= 0, got -1",
        "upstreams[1].retries.retry_on: unknown condition 'sometimes'; expected one of: "
        "5xx, connect-failure, gateway-error, reset, retriable-status-codes, timeout",
        "upstreams[1].retries.per_try_timeout: expected a duration like '250ms', '5s' or '1m', "
        "got '5q'",
    ]


def test_a_static_entry_may_be_named_and_a_bad_name_is_refused_by_path():
    cfg = load_text(
        "service: {name: s, port: 1}\nupstreams: [{name: a, listen: 'h:1', discovery: "
        "{static: [10.0.0.5:80, {address: 10.0.0.6, port: 80, name: billing-b}]}}]",
        environ={},
    )
    static = cfg.upstreams[0].discovery.static
    assert static is not None and [e.name for e in static] == [None, "billing-b"]
    errors = errors_of(
        "service: {name: s, port: 1}\nupstreams: [{name: a, listen: 'h:1', discovery: "
        "{static: [{address: a, port: 1, name: ' '}, {address: b, port: 1, name: \"x\\ty\"},"
        " {address: c, port: 1, name: [x]}]}}]"
    )
    assert errors == [
        "upstreams[0].discovery.static[0].name: must not be empty",
        "upstreams[0].discovery.static[1].name: must not hold control characters",
        "upstreams[0].discovery.static[2].name: expected a string, got a list",
    ]


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("service: {name: s}", "service.port: required"),
        (
            "service: {name: s, port: 1}\nupstreams: [{name: a, discovery: {static: [x:1]}}]",
            "upstreams[0].listen: required unless listeners.egress routes to it by Host",
        ),
        (
            "service: {name: s, port: 1}\n"
            "upstreams: [{name: a, listen: '1.2.3.4:5', discovery: {}}]",
            "upstreams[0].discovery: exactly one of static, consul or dns_srv is required",
        ),
        (
            "service: {name: s, port: 1}\n"
            "upstreams: [{name: a, listen: 'nope', discovery: {static: [a:1]}}]",
            "upstreams[0].listen: expected 'host:port', got 'nope'",
        ),
        (
            "service: {name: s, port: 1}\n"
            "upstreams: [{name: a, listen: 'h:1', discovery: {static: [a:1]},"
            ' response_headers: {add: {x-a: "v\\r\\nevil: 1"}}}]',
            "upstreams[0].response_headers.add: the value of x-a holds CR, LF or NUL",
        ),
        (
            "service: {name: s, port: 1}\n"
            "upstreams: [{name: a, listen: 'h:1', discovery: {static: [a:1]},"
            ' rewrite: {host: "a\\r\\nx: 1"}}]',
            "upstreams[0].rewrite.host: must be a host or host:port, got 'a\\r\\nx: 1'",
        ),
        (
            "service: {name: s, port: 1}\n"
            "upstreams: [{name: a, listen: 'h:1', discovery: {static: [a:1]},"
            " rewrite: {strip_prefix: 'api v1'}}]",
            "upstreams[0].rewrite.strip_prefix: must be a path starting with / without "
            "spaces or control characters, got 'api v1'",
        ),
        (
            "service: {name: s, port: 1}\n"
            "upstreams: [{name: a, listen: 'h:1', discovery: {static: [a:1]},"
            " health_check: {http: {path: '/ready now'}}}]",
            "upstreams[0].health_check.http.path: must be a path starting with / without "
            "spaces or control characters, got '/ready now'",
        ),
        (
            "service: {name: s, port: 1}\n"
            "upstreams: [{name: a, listen: 'h:1', discovery: {static: [a:1]},"
            " request_headers: {add: {'x a': v}}}]",
            "upstreams[0].request_headers.add: 'x a' is not a valid header name",
        ),
        (
            "service: {name: s, port: 1}\n"
            "upstreams: [{name: a, listen: 'h:1', discovery: {static: [a:1]},"
            " request_headers: {remove: ['x:y']}}]",
            "upstreams[0].request_headers.remove: 'x:y' is not a valid header name",
        ),
        (
            "service: {name: s, port: 1}\n"
            "upstreams: [{name: a, listen: 'h:1', discovery: {static: [a:1]},"
            " balancer: {policy: ring_hash}}]",
            "upstreams[0].balancer: balancer.hash_on is required with policy ring_hash",
        ),
        (
            "service: {name: s, port: 1}\n"
            "upstreams: [{name: a, listen: 'h:1', discovery: {static: [a:1]},"
            " balancer: {policy: ring_hash, hash_on: 'body'}}]",
            "upstreams[0].balancer.hash_on: unknown hash source 'body'; "
            "expected one of: cookie, header, "
            "path, query, source_ip",
        ),
        (
            "service: {name: s, port: 1}\nlisteners: {admin: {port: 9}}\nupstreams: [{name: a, "
            "listen: '127.0.0.1:9', discovery: {static: [a:1]}}]",
            "upstreams[0].listen: 127.0.0.1:9 is already used by listeners.admin",
        ),
        (
            "service: {name: s, port: 1}\n"
            "upstreams: [{name: a, listen: 'h:1', discovery: {static: [a:1]}},"
            " {name: a, listen: 'h:2', discovery: {static: [a:1]}}]",
            "upstreams[1].name: 'a' is already the name of upstreams[0]",
        ),
        (
            "service: {name: s, port: 1}\nlog_level: loud",
            "log_level: unknown value 'loud'; expected one of: debug, error, info, warning",
        ),
        (
            "service: {name: s, port: 1}\ndrain_timeout: true",
            "drain_timeout: expected a duration like '250ms', '5s' or '1m', got True",
        ),
        # Values the policy cores would refuse at start: refused here, by path, instead.
        ("service: {name: ' ', port: 1}", "service.name: must not be empty"),
        (
            "service: {name: s, port: 1}\n"
            "upstreams: [{name: '', listen: 'h:1', discovery: {static: [a:1]}}]",
            "upstreams[0].name: must not be empty",
        ),
        (
            "service: {name: s, port: 1}\n"
            "upstreams: [{name: a, listen: 'h:1', discovery: {consul: {service: ''}}}]",
            "upstreams[0].discovery.consul.service: must not be empty",
        ),
        (
            "service: {name: s, port: 1}\n"
            "upstreams: [{name: a, listen: 'h:1', discovery: {dns_srv: {name: ''}}}]",
            "upstreams[0].discovery.dns_srv.name: must not be empty",
        ),
        (
            "service: {name: s, port: 1}\n"
            "upstreams: [{name: a, listen: 'h:1', discovery: {dns_srv: {name: x, timeout: 0s}}}]",
            "upstreams[0].discovery.dns_srv.timeout: must be > 0, got 0.0",
        ),
        (
            "service: {name: s, port: 1}\n"
            "upstreams: [{name: a, listen: 'h:1', discovery: {static: [a:1]},"
            " retries: {backoff: {base: 1s, max: 100ms}}}]",
            "upstreams[0].retries.backoff: need base <= max, got base=1s max=0.1s",
        ),
        (
            "service: {name: s, port: 1}\n"
            "upstreams: [{name: a, listen: 'h:1', discovery: {static: [a:1]},"
            " retries: {backoff: {base: 0s}}}]",
            "upstreams[0].retries.backoff.base: must be > 0, got 0.0",
        ),
        (
            "service: {name: s, port: 1}\n"
            "upstreams: [{name: a, listen: 'h:1', discovery: {static: [a:1]},"
            " retries: {budget: {window: 0s}}}]",
            "upstreams[0].retries.budget.window: must be > 0, got 0.0",
        ),
        (
            "service: {name: s, port: 1}\n"
            "upstreams: [{name: a, listen: 'h:1', discovery: {static: [a:1]},"
            " outlier_detection: {base_ejection_time: 0s}}]",
            "upstreams[0].outlier_detection.base_ejection_time: must be > 0, got 0.0",
        ),
        (
            "service: {name: s, port: 1}\n"
            "upstreams: [{name: a, listen: 'h:1', discovery: {static: [a:1]},"
            " balancer: {policy: ring_hash, hash_on: path,"
            " ring: {min_ring_size: 4096, max_ring_size: 1024}}}]",
            "upstreams[0].balancer.ring: need min_ring_size <= max_ring_size, got 4096 and 1024",
        ),
        ("service: [1]", "service: expected a mapping, got a list"),
        (
            "service: {name: s, port: 1\n",
            "invalid YAML at line 2, column 1: did not find expected ',' or '}'",
        ),
    ],
)
def test_single_errors(snippet, expected):
    assert expected in errors_of(snippet)


def test_environment_overrides_and_interpolation():
    env = {
        "CONSUL_HTTP_ADDR": "https://consul.local:8501",
        "CONSUL_HTTP_TOKEN": "s3cr3t",
        "OTEL_SERVICE_NAME": "orders-sidecar",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318/",
        "OTEL_TRACES_SAMPLER": "traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
        "APP_PORT": "8081",
    }
    cfg = load_text(
        "service: {name: s, port: '${APP_PORT}', address: '${APP_HOST:-127.0.0.2}'}", environ=env
    )
    assert cfg.service.port == 8081 and cfg.service.address == "127.0.0.2"
    assert (cfg.consul.scheme, cfg.consul.address, cfg.consul.token) == (
        "https",
        "consul.local:8501",
        "s3cr3t",
    )
    assert cfg.tracing.service_name == "orders-sidecar"
    assert cfg.tracing.endpoint == "http://jaeger:4318/v1/traces"
    assert (cfg.tracing.sampler, cfg.tracing.sampler_arg) == ("traceidratio", 0.25)
    plain = redacted(cfg)
    assert plain["consul"]["token"] == "<redacted>"
    assert "s3cr3t" not in repr(plain)
    assert "service.name: environment variable MISSING is not set" in errors_of(
        "service: {name: '${MISSING}', port: 1}"
    )


def test_batch_span_processor_variables_map_to_tracing_keys():
    env = {
        "OTEL_BSP_SCHEDULE_DELAY": "250",  # milliseconds, as OpenTelemetry gives it
        "OTEL_BSP_MAX_QUEUE_SIZE": "4096",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "64",
        "OTEL_BSP_EXPORT_TIMEOUT": "10000",
    }
    tracing = load_text("service: {name: s, port: 1}", environ=env).tracing
    assert (tracing.schedule_delay, tracing.max_queue_size, tracing.max_export_batch_size) == (
        0.25,
        4096,
        64,
    )
    assert tracing.export_timeout == 10.0
    defaults = load_text("service: {name: s, port: 1}", environ={}).tracing
    assert (defaults.schedule_delay, defaults.max_queue_size) == (0.5, 2048)


@pytest.mark.parametrize(
    ("var", "value", "error"),
    [
        ("OTEL_BSP_MAX_QUEUE_SIZE", "lots", "tracing.max_queue_size: "),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "0", "tracing.max_queue_size: must be >= 1, got 0"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "-5", "tracing.max_export_batch_size: "),
        ("OTEL_BSP_SCHEDULE_DELAY", "soon", "tracing.schedule_delay: "),
        ("OTEL_BSP_EXPORT_TIMEOUT", "abc", "tracing.export_timeout: "),
    ],
)
def test_bad_batch_span_processor_variables_are_config_errors(var, value, error):
    with pytest.raises(ConfigError) as caught:
        load_text("service: {name: s, port: 1}", environ={var: value})
    assert any(line.startswith(error) for line in caught.value.errors), caught.value.errors


def test_configs_are_frozen():
    cfg = load_text(EXAMPLE, environ={})
    with pytest.raises(AttributeError):
        cfg.upstreams[0].retries.attempts = 5  # type: ignore[misc]


def test_check_config_cli_exit_codes(tmp_path: Path):
    good = tmp_path / "good.yaml"
    good.write_text(EXAMPLE)
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.replace("ring_hash", "fastest").replace("strip_prefix", "strip"))
    ok = subprocess.run(
        [sys.executable, "-m", "sidecar", "check-config", str(good)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    failed = subprocess.run(
        [sys.executable, "-m", "sidecar", "check-config", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert failed.returncode == 2
    assert "upstreams[0].balancer.policy: unknown policy 'fastest'" in failed.stderr
    assert (
        "upstreams[0].rewrite.strip: unknown key; expected one of: host, strip_prefix"
        in failed.stderr
    )
    version = subprocess.run(
        [sys.executable, "-m", "sidecar", "--version"], capture_output=True, text=True, check=False
    )
    assert version.returncode == 0 and "pilotfish" in version.stdout


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        (
            "service: {name: s, port: 1}\nconsul: {address: '::1:8500'}",
            "consul.address: '::1:8500': write IPv6 addresses in brackets, e.g. [::1]:8500",
        ),
        (
            "service: {name: s, port: 1}\n"
            "upstreams: [{name: a, listen: 'h:1',"
            " discovery: {dns_srv: {name: a.service.consul, nameservers: ['ns:70000']}}}]",
            "upstreams[0].discovery.dns_srv.nameservers: 'ns:70000': port must be 1..65535",
        ),
    ],
)
def test_consul_and_nameserver_addresses_are_checked(snippet, expected):
    assert expected in errors_of(snippet)


def test_a_bad_consul_address_from_the_environment_is_a_config_error():
    with pytest.raises(ConfigError) as caught:
        load_text("service: {name: s, port: 1}", environ={"CONSUL_HTTP_ADDR": "http://[::1"})
    assert caught.value.errors == ["consul.address: '[::1': unterminated or empty [IPv6] literal"]


@pytest.mark.parametrize(
    ("endpoint", "error"),
    [
        ("not a url", "tracing.endpoint: expected an http:// or https:// URL, got 'not a url'"),
        ("grpc://jaeger:4317", "tracing.endpoint: expected an http:// or https:// URL, got "),
        ("http://jaeger:99999/v1/traces", "tracing.endpoint: 'http://jaeger:99999/v1/traces': "),
    ],
)
def test_a_tracing_endpoint_must_be_an_http_url(endpoint, error):
    with pytest.raises(ConfigError) as caught:
        load_text(
            "service: {name: s, port: 1}", environ={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint}
        )
    assert any(line.startswith(error) for line in caught.value.errors), caught.value.errors
