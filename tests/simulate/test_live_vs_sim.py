"""One scenario, run twice: live (a real sidecar on 127.0.0.1, real aiohttp backends that
inject the scenario's faults, real time) and simulated. Both must make the same decisions:
the same endpoints ejected after the same number of failures, retries and successes
within 10 %."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from sidecar.simulate.driver import simulate
from sidecar.simulate.load import load_scenario_text
from sidecar.simulate.report import to_json
from sidecar.simulate.scenario import Scenario
from sidecar.simulate.traffic import Traffic
from tests.resilience_it.support import answer, api, closed_port, cluster_of, hang

SCENARIO = """
description: three of five endpoints broken from the start (503, refusing, hanging)
duration: 4s
load: {rate: 50, arrivals: even}
upstreams:
  api:
    latency: 1ms
    endpoints: [a, b, c, d, e]
    faults:
      - {endpoint: a, kind: errors, status: 503}
      - {endpoint: b, kind: refuse}
      - {endpoint: c, kind: hang}
"""
POLICIES: dict[str, Any] = {
    # Round robin's order, met by retries of concurrent requests, hangs on timing to the
    # millisecond; random picks make the two runs comparable by their numbers.
    "balancer": {"policy": "random"},
    # One retry more than there are broken endpoints: every request ends on a good one.
    "retries": {"attempts": 3, "per_try_timeout": "30ms"},
    "panic_threshold": 30,
    "outlier_detection": {
        "max_ejection_percent": 60,
        "consecutive_5xx": 20,
        "consecutive_gateway_failure": 20,
        "consecutive_local_origin_failure": 20,
        "base_ejection_time": "60s",
    },
    "circuit_breakers": {"endpoint": None},
}


async def start_fleet(lab: Any, scenario: Scenario) -> dict[str, str]:
    """An address per endpoint, behaving as the scenario's (whole-run) faults say."""
    spec = scenario.upstreams["api"]
    addresses = {}
    for endpoint in spec.endpoints:
        faults = [f for f in spec.faults if f.endpoint == endpoint.name]
        assert all(f.at == 0 and f.duration is None for f in faults)
        kinds = {f.kind for f in faults}
        assert kinds <= {"errors", "refuse", "hang"}, "the live fleet plays only these"
        if "refuse" in kinds:
            addresses[endpoint.name] = f"127.0.0.1:{closed_port()}"
            continue
        (backend,) = await lab.start_backends(1)
        for fault in faults:
            if fault.kind == "hang":
                backend.behaviour = hang(lab.release)
            else:
                backend.behaviour = answer(backend, fault.answer_status)
        addresses[endpoint.name] = backend.address
    return addresses


async def run_live(lab: Any, client: Any, scenario: Scenario) -> tuple[Any, dict[str, Any]]:
    addresses = await start_fleet(lab, scenario)
    sidecar = await lab.start_sidecar(list(addresses.values()), seed=scenario.seed, **POLICIES)
    cluster = cluster_of(sidecar)
    names = {address: name for name, address in addresses.items()}
    ejected: dict[str, int] = {}
    cluster.on_ejection.append(
        lambda e: ejected.setdefault(names[str(e.id)], cluster.states[str(e.id)].failures)
    )
    # The scenario's own arrival times, kept in real time.
    assert scenario.load is not None
    traffic = Traffic(scenario.load, scenario.duration, random.Random(0))
    times, t = [], traffic.first_arrival()
    while t is not None:
        times.append(t)
        t = traffic.next_arrival(t)

    async def one() -> int:
        async with client.get(api(sidecar)) as r:
            await r.read()
            return r.status

    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = []
    for t in times:
        await asyncio.sleep(max(0.0, start + t - loop.time()))
        sent.append(asyncio.create_task(one()))
    statuses = await asyncio.gather(*sent)
    attempts = sum(s.successes + s.failures for s in cluster.states.values())
    return sidecar.config, {
        "requests": len(statuses),
        "successes": sum(1 for s in statuses if s < 500),
        "retries": attempts - len(statuses),
        "ejected": ejected,
    }


def summarise(summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "requests": summary["requests"],
        "successes": round(summary["success_rate"] * summary["requests"]),
        "retries": summary["retries"],
        "ejected": {e["endpoint"]: e["failures"] for e in summary["ejection_log"]},
    }


async def test_live_and_simulated_runs_make_the_same_decisions(lab, client):
    scenario = load_scenario_text(SCENARIO)
    async with asyncio.timeout(30):
        config, live = await run_live(lab, client, scenario)
    result = await asyncio.to_thread(simulate, config, scenario)
    simulated = summarise(to_json(result)["upstreams"]["api"])
    assert live["requests"] == simulated["requests"] == 200
    assert live["ejected"] == simulated["ejected"] == {"a": 20, "b": 20, "c": 20}
    for key in ("retries", "successes"):
        assert abs(live[key] - simulated[key]) <= 0.1 * simulated[key], (key, live, simulated)
