"""Parsers of the tools' output and of /proc, and the config renderer."""

from __future__ import annotations

import json

import pytest

from bench.load import parse_loadgen, parse_wrk, require_loopback
from bench.procstat import parse_core_times, parse_stat, parse_vmhwm_kib
from bench.targets import render

WRK_OUTPUT = """Running 5s test @ http://127.0.0.1:19201/small
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.61ms  402.11us  12.01ms   91.23%
    Req/Sec    24.57k     1.10k   26.01k    78.00%
  122297 requests in 5.00s, 29.04MB read
{extra}Requests/sec:  24459.40
Transfer/sec:      5.81MB
"""


@pytest.mark.parametrize(
    ("extra", "socket_errors", "non_2xx"),
    [
        ("", 0, 0),
        ("  Socket errors: connect 0, read 3, write 1, timeout 2\n", 6, 0),
        ("  Non-2xx or 3xx responses: 17\n", 0, 17),
    ],
)
def test_parse_wrk(extra: str, socket_errors: int, non_2xx: int) -> None:
    result = parse_wrk(WRK_OUTPUT.format(extra=extra))
    assert result.requests == 122297
    assert result.seconds == pytest.approx(5.0)
    assert result.requests_per_s == pytest.approx(24459.40)
    assert result.socket_errors == socket_errors
    assert result.non_2xx == non_2xx


@pytest.mark.parametrize(("text", "seconds"), [("in 500.12ms,", 0.50012), ("in 1.00m,", 60.0)])
def test_parse_wrk_units(text: str, seconds: float) -> None:
    out = WRK_OUTPUT.format(extra="").replace("in 5.00s,", text)
    assert parse_wrk(out).seconds == pytest.approx(seconds)


def test_parse_wrk_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="unrecognised"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused")


def _loadgen_json(**overrides: object) -> str:
    data: dict[str, object] = {
        "mode": "open",
        "offered_rate": 1000,
        "conns": 64,
        "measured_s": 5,
        "counted": 5000,
        "ok": 5000,
        "ok_total": 6000,
        "errors": 0,
        "dropped": 0,
        "achieved_rate": 1000,
        "p50_ms": 0.2,
        "p90_ms": 0.3,
        "p99_ms": 0.9,
        "p999_ms": 2.0,
        "max_ms": 3.0,
        "send_lag_p50_ms": 0.02,
        "send_lag_p99_ms": 0.4,
    }
    data |= overrides
    return "noise on an earlier line\n" + json.dumps(data) + "\n"


@pytest.mark.parametrize(
    ("overrides", "kept_up"),
    [
        ({}, True),
        ({"achieved_rate": 981}, True),
        ({"achieved_rate": 979}, False),
        ({"errors": 1}, False),
        ({"dropped": 3}, False),
        ({"offered_rate": 0, "achieved_rate": 12000}, True),
    ],
)
def test_parse_loadgen_and_kept_up(overrides: dict[str, object], kept_up: bool) -> None:
    result = parse_loadgen(_loadgen_json(**overrides))
    assert result.p99_ms == pytest.approx(0.9)
    assert result.ok_total == 6000
    assert result.send_lag_p99_ms == pytest.approx(0.4)
    assert result.kept_up is kept_up


@pytest.mark.parametrize(
    "url", ["http://10.0.0.1:80/", "http://localhost:8080/", "http://example.com/small"]
)
def test_require_loopback_refuses_other_hosts(url: str) -> None:
    with pytest.raises(ValueError, match="refusing"):
        require_loopback(url)


def test_require_loopback_accepts_127_0_0_1() -> None:
    assert require_loopback("http://127.0.0.1:19201/small") == "http://127.0.0.1:19201/small"


def test_parse_stat_with_awkward_command_name() -> None:
    fields = [str(n) for n in range(3, 53)]
    fields[0] = "S"
    fields[1] = "4242"  # ppid
    fields[11] = "150"  # utime
    fields[12] = "25"  # stime
    stat = parse_stat("1234 (weird ) name (x)) " + " ".join(fields))
    assert (stat.ppid, stat.utime_ticks, stat.stime_ticks) == (4242, 150, 25)


@pytest.mark.parametrize(
    ("text", "kib"),
    [
        ("Name:\tnginx\nVmPeak:\t  20000 kB\nVmHWM:\t   15360 kB\nVmRSS:\t 9000 kB\n", 15360),
        ("Name:\tkthreadd\nState:\tS (sleeping)\n", 0),
    ],
)
def test_parse_vmhwm(text: str, kib: int) -> None:
    assert parse_vmhwm_kib(text) == kib


def test_render_fills_every_placeholder() -> None:
    assert render("listen {{a}}; pid {{b}}/x;", {"a": "127.0.0.1:1", "b": "/w"}) == (
        "listen 127.0.0.1:1; pid /w/x;"
    )


def test_render_refuses_leftovers() -> None:
    with pytest.raises(ValueError, match="unfilled placeholder"):
        render("listen {{a}}; {{missing}}", {"a": "x"})


def test_parse_core_times_excludes_idle_and_iowait() -> None:
    text = (
        "cpu  10 0 10 100 5 0 0 0 0 0\n"
        "cpu0 7 1 3 50 2 1 1 0 4 0\n"
        "cpu1 3 0 7 50 3 0 0 0 0 0\n"
        "intr 12345\n"
    )
    # user+nice+system+irq+softirq+steal = 13; plus idle 50 and iowait 2 makes 65.
    assert parse_core_times(text, 0) == (13, 65)
    assert parse_core_times(text, 1) == (10, 63)
    with pytest.raises(ValueError):
        parse_core_times(text, 2)
