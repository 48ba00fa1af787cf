"""The open-loop generator against small local servers: schedule kept, queueing measured."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.load import parse_loadgen, run_loadgen
from bench.targets import BENCH_DIR
from bench.toolchain import build_go


@pytest.fixture(scope="module")
def loadgen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("go") / "loadgen"
    return build_go(BENCH_DIR / "loadgen" / "main.go", out)


def _serve(delay_s: float) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Headers and body leave in two writes; Nagle would hold the second for an ACK.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_GET(self) -> None:
            time.sleep(delay_s)
            body = b"x" * 100
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/small"


@pytest.fixture
def fast_server() -> Iterator[str]:
    server, url = _serve(0.0)
    yield url
    server.shutdown()


@pytest.fixture
def slow_server() -> Iterator[str]:
    server, url = _serve(0.05)
    yield url
    server.shutdown()


def test_open_loop_sends_exactly_the_schedule(loadgen: Path, fast_server: str) -> None:
    result = run_loadgen(
        loadgen, fast_server, rate=200, connections=8, warmup_s=0.25, seconds=1.0, core=1
    )
    assert result.ok == 200
    assert result.errors == result.dropped == 0
    assert result.kept_up
    assert 0 < result.p50_ms <= result.p90_ms <= result.p99_ms


def test_open_loop_charges_queueing_to_the_server(loadgen: Path, slow_server: str) -> None:
    # One connection and 50 ms per request serve 20 req/s; 100 req/s are offered. A closed
    # loop would report ~50 ms; measured from the schedule, the queue must show.
    result = run_loadgen(
        loadgen, slow_server, rate=100, connections=1, warmup_s=0.1, seconds=1.0, core=1
    )
    assert not result.kept_up
    assert result.achieved_rate < 40
    assert result.p50_ms > 200


def test_closed_loop_one_in_flight(loadgen: Path, slow_server: str) -> None:
    result = run_loadgen(
        loadgen, slow_server, rate=0, connections=1, warmup_s=0.1, seconds=0.5, core=1
    )
    assert 45 <= result.p50_ms < 200
    assert 5 <= result.ok <= 11


def test_loadgen_refuses_non_loopback_targets(loadgen: Path) -> None:
    done = subprocess.run(
        [str(loadgen), "-url=http://10.0.0.1:80/", "-rate=1", "-duration=1s"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert done.returncode == 2
    assert "only http://127.0.0.1" in done.stderr
    assert done.stdout == ""


def test_parse_loadgen_reads_the_real_output(loadgen: Path, fast_server: str) -> None:
    done = subprocess.run(
        [str(loadgen), f"-url={fast_server}", "-rate=50", "-duration=0.2s", "-warmup=0s"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    assert parse_loadgen(done.stdout).offered_rate == 50
