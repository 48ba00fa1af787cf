"""ConsulClientOptions (from_env, repr), Go durations, host:port parsing, TLS context."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from discovery.consul_client import ConsulClientOptions, go_duration, ssl_context
from discovery.hostport import join_host_port, split_host_port

SECRET = "b1gs3cr3t-0000-1111"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, ConsulClientOptions()),
        ({"CONSUL_HTTP_ADDR": "consul:8500"}, ConsulClientOptions(address="consul:8500")),
        (
            {"CONSUL_HTTP_ADDR": "https://consul.example:8501"},
            ConsulClientOptions(address="consul.example:8501", scheme="https"),
        ),
        (
            {"CONSUL_HTTP_ADDR": "http://10.0.0.1:8500", "CONSUL_HTTP_SSL": "true"},
            ConsulClientOptions(address="10.0.0.1:8500", scheme="https"),
        ),
        ({"CONSUL_HTTP_SSL": "1"}, ConsulClientOptions(scheme="https")),
        ({"CONSUL_HTTP_SSL": "false"}, ConsulClientOptions()),
        ({"CONSUL_HTTP_ADDR": "[::1]:8500"}, ConsulClientOptions(address="[::1]:8500")),
        ({"CONSUL_HTTP_TOKEN": SECRET}, ConsulClientOptions(token=SECRET)),
        ({"CONSUL_HTTP_TOKEN": ""}, ConsulClientOptions()),
        ({"CONSUL_HTTP_SSL_VERIFY": "false"}, ConsulClientOptions(verify=False)),
        (
            {"CONSUL_CACERT": "/ca.pem", "CONSUL_CLIENT_CERT": "/c.pem", "CONSUL_CLIENT_KEY": "/k"},
            ConsulClientOptions(ca_file="/ca.pem", cert_file="/c.pem", key_file="/k"),
        ),
    ],
)
def test_from_env(env: dict[str, str], expected: ConsulClientOptions) -> None:
    assert ConsulClientOptions.from_env(env) == expected


def test_token_file_wins_over_token_and_is_trimmed(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(f"  {SECRET}\n")
    env = {"CONSUL_HTTP_TOKEN": "other", "CONSUL_HTTP_TOKEN_FILE": str(token_file)}
    assert ConsulClientOptions.from_env(env).token == SECRET


def test_an_empty_token_file_leaves_the_token(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("\n")
    env = {"CONSUL_HTTP_TOKEN": SECRET, "CONSUL_HTTP_TOKEN_FILE": str(token_file)}
    assert ConsulClientOptions.from_env(env).token == SECRET


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CONSUL_HTTP_SSL": "yes"}, "CONSUL_HTTP_SSL"),
        ({"CONSUL_HTTP_SSL_VERIFY": "nope"}, "CONSUL_HTTP_SSL_VERIFY"),
        ({"CONSUL_HTTP_ADDR": "unix:///var/run/consul.sock"}, "unsupported scheme"),
        ({"CONSUL_HTTP_ADDR": "https://consul/prefix"}, "path prefix"),
        ({"CONSUL_HTTP_ADDR": "::1:8500"}, "brackets"),
        ({"CONSUL_HTTP_ADDR": "consul:http"}, "port"),
        ({"CONSUL_HTTP_TOKEN_FILE": "/nonexistent/token"}, "CONSUL_HTTP_TOKEN_FILE"),
        ({"CONSUL_CLIENT_KEY": "/k"}, "key_file needs cert_file"),
    ],
)
def test_from_env_rejects_bad_settings(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ConsulClientOptions.from_env(env)


def test_repr_never_shows_the_token() -> None:
    options = ConsulClientOptions(token=SECRET)
    assert SECRET not in repr(options)
    assert SECRET not in str(options)
    assert "token=<set>" in repr(options)
    assert "token=None" in repr(ConsulClientOptions())


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5, "5s"), (1.0, "1s"), (60, "1m"), (90, "1m30s"), (3600, "1h"), (3661, "1h1m1s"),
     (0.25, "250ms"), (55.0, "55s"), (0, "0s"), (1.5, "1500ms")],
)  # fmt: skip
def test_go_duration(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8600", ("127.0.0.1", 8600)),
        ("consul", ("consul", 53)),
        ("[::1]:53", ("::1", 53)),
        ("[2001:db8::1]", ("2001:db8::1", 53)),
    ],
)
def test_split_host_port(text: str, expected: tuple[str, int]) -> None:
    assert split_host_port(text, 53) == expected
    assert split_host_port(join_host_port(*expected), 0) == expected


@pytest.mark.parametrize("text", ["", ":53", "::1", "[::1", "[::1]x", "host:0", "host:99999", "[]"])
def test_split_host_port_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        split_host_port(text, 53)


def test_tls_context_follows_the_options() -> None:
    assert ssl_context(ConsulClientOptions()) is None
    verified = ssl_context(ConsulClientOptions(scheme="https"))
    assert verified is not None and verified.verify_mode == ssl.CERT_REQUIRED
    unverified = ssl_context(ConsulClientOptions(scheme="https", verify=False))
    assert unverified is not None and unverified.verify_mode == ssl.CERT_NONE
    with pytest.raises(OSError):
        ssl_context(ConsulClientOptions(scheme="https", ca_file="/nonexistent/ca.pem"))
