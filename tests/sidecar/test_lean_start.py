"""A sidecar without Consul, DNS or an OTLP collector loads none of their client libraries.

Each costs start-up time and memory the benchmark holds against its targets (aiohttp alone
about 0.4 s and 10+ MiB), so they are imported only when configured. Checked in a fresh
interpreter: this test process has imported all of them already.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    import yaml
    from sidecar.app import Sidecar
    from sidecar.config.load import load_text

    async def main():
        doc = {
            "service": {"name": "lean", "port": 1},
            "listeners": {
                "admin": {"address": "127.0.0.1", "port": 0},
                "inbound": {"address": "127.0.0.1", "port": 0},
            },
            "upstreams": [{
                "name": "api",
                "listen": "127.0.0.1:0",
                "discovery": {"static": ["127.0.0.1:1"]},
                "health_check": {"http": {"path": "/live"}, "interval": "50ms"},
            }],
            "tracing": {"sampler": "always_on"},
        }
        sidecar = Sidecar(load_text(yaml.safe_dump(doc), environ={}))
        await sidecar.start()
        checker = sidecar.health_checkers["api"]
        # Let the checker probe (and fail: nothing listens on port 1) a few times.
        for _ in range(200):
            if checker.probes >= 2:
                break
            await asyncio.sleep(0.01)
        probes = checker.probes
        await sidecar.stop()
        heavy = sorted(
            m for m in sys.modules
            if m.split(".")[0] in {"aiohttp", "consul", "aiodns", "pycares", "requests"}
            or m.startswith("opentelemetry.exporter")
        )
        print(json.dumps({"heavy": heavy, "probes": probes}))

    asyncio.run(main())
    """
)


def test_static_discovery_health_checks_and_local_tracing_import_no_network_clients() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["probes"] >= 2  # the HTTP probe path really ran
    assert result["heavy"] == []
