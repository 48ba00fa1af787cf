"""One run of a scenario against a configuration, on an event loop with virtual time.

The driver builds, per upstream the scenario names, the fleet model, the statistics and a
``SimCluster`` (the live classes on a simulated network), then puts the scenario on the
loop's timeline: the first snapshot and the health checks at 0, every fault's start and end
(repeated ``every`` so often), discovery changes and outages, each request at its arrival
time, and a sampling tick for the endpoint states. Arrivals stop at the end of the run;
requests still in flight are given the longest total timeout to finish (a minute when a
cluster has none), and what is left then counts as unfinished.

Invariants: the sidecar's randomness comes from one ``random.Random(seed)`` shared by its
clusters, as in a live sidecar; the traffic and the fleet draw from their own streams
derived from the seed, so two configurations run on the same seed meet the same requests
and the same fleet. Nothing reads the wall clock. A bug met while running (an exception
that is not a simulated failure) stops the run and is raised, never folded into the numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sidecar.config.schema import Config
from sidecar.simulate.adapter import SimCluster
from sidecar.simulate.fleet import SimEndpoint, UpstreamFleet
from sidecar.simulate.load import check_against, targets
from sidecar.simulate.scenario import FaultSpec, Scenario
from sidecar.simulate.stats import UpstreamStats
from sidecar.simulate.traffic import Traffic
from sidecar.simulate.vloop import VirtualTimeLoop

TICKS_PER_BIN = 20
POLL = 0.05  # how often the drain looks whether every request has finished
NO_TOTAL_DRAIN = 60.0


@dataclass(frozen=True)
class UpstreamRun:
    name: str
    policy: str
    endpoints: list[str]
    first_fault: float | None
    key_count: int
    stats: UpstreamStats


@dataclass(frozen=True)
class Result:
    description: str
    duration: float
    seed: int
    upstreams: dict[str, UpstreamRun]


def simulate(config: Config, scenario: Scenario, *, seed: int | None = None) -> Result:
    """Run ``scenario`` against ``config``; the same inputs give the same ``Result``."""
    check_against(scenario, config)
    run_seed = scenario.seed if seed is None else seed
    loop = VirtualTimeLoop()
    run = _Run(config, scenario, run_seed, loop)
    loop.set_exception_handler(run.failed)
    try:
        with _quiet_health_log():
            loop.run_until_complete(run.main())
    except RuntimeError:
        if run.failure is None:
            raise
    finally:
        loop.close()
    if run.failure is not None:
        raise run.failure
    return run.result()


class _Run:
    def __init__(self, config: Config, scenario: Scenario, seed: int, loop: VirtualTimeLoop):
        self.loop = loop
        self.scenario = scenario
        self.seed = seed
        self.failure: BaseException | None = None
        self.duration = scenario.duration
        by_name = {up.name: up for up in config.upstreams}
        rng = random.Random(seed)  # the sidecar's own, shared by its clusters
        self.sims: dict[str, SimCluster] = {}
        self.traffic: dict[str, Traffic] = {}
        self.runs: dict[str, UpstreamRun] = {}
        for name, spec in scenario.upstreams.items():
            upstream = by_name[name]
            load = spec.load or scenario.load
            assert load is not None  # the loader refuses a scenario without one
            fleet = UpstreamFleet(name, spec, seed)
            names = [ep.name for ep in fleet.endpoints]
            keyed = upstream.balancer.hash_on is not None and load.keys is not None
            stats = UpstreamStats(names, self.duration, keyed)
            sim = SimCluster(upstream, fleet, stats, loop=loop, rng=rng)
            fleet.on_registry_change.append(sim.publish)
            self.sims[name] = sim
            self.traffic[name] = Traffic(load, self.duration, random.Random(f"{seed}:{name}:load"))
            faults = [f.at for f in spec.faults if f.kind != "back"]
            self.runs[name] = UpstreamRun(
                name=name,
                policy=upstream.balancer.policy,
                endpoints=names,
                first_fault=min(faults) if faults else None,
                key_count=load.keys.count if keyed and load.keys else 0,
                stats=stats,
            )
        first = next(iter(self.runs.values()), None)
        self.tick = first.stats.bin / TICKS_PER_BIN if first else 1.0
        self.drain = max(
            (by_name[n].timeouts.total or NO_TOTAL_DRAIN for n in self.sims), default=0.0
        )

    def failed(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if self.failure is None:
            error = context.get("exception")
            self.failure = error or RuntimeError(context.get("message", "simulation failed"))
        loop.stop()

    def result(self) -> Result:
        return Result(self.scenario.description, self.duration, self.seed, self.runs)

    async def main(self) -> None:
        loop = self.loop
        for sim in self.sims.values():
            sim.publish()
        for name, sim in self.sims.items():
            self._schedule_events(name, sim)
        for sim in self.sims.values():
            sim.start_health_checks()
        for name, sim in self.sims.items():
            traffic = self.traffic[name]
            first = traffic.first_arrival()
            if first is not None:
                loop.call_at(first, self._arrive, sim, traffic, first)
        loop.call_at(0.0, self._sample)
        await asyncio.sleep(self.duration)
        end = self.duration + self.drain
        while any(sim.in_flight for sim in self.sims.values()) and loop.time() < end:
            await asyncio.sleep(POLL)
        for sim in self.sims.values():
            if sim.stats.keyed:  # where every key seen would go now, once traffic stopped
                sim.stats.keys_away_at_end = sim.keys_away(list(sim.stats.keys))
        me = asyncio.current_task()
        rest = [t for t in asyncio.all_tasks(loop) if t is not me]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    # -- the timeline --------------------------------------------------------------------

    def _arrive(self, sim: SimCluster, traffic: Traffic, t: float) -> None:
        method, body, key = traffic.request()
        self.loop.create_task(sim.request(t, method, body, key))
        nxt = traffic.next_arrival(t)
        if nxt is not None:
            self.loop.call_at(nxt, self._arrive, sim, traffic, nxt)

    def _sample(self) -> None:
        now = self.loop.time()
        for sim in self.sims.values():
            by_name = sim.fleet.by_name
            states = {
                name: (bool(by_name[name].active), *flags) for name, flags in sim.states().items()
            }
            sim.stats.sample(now, self.tick, states, sim.panic, sim.panic_count)
        if now + self.tick < self.duration:
            self.loop.call_at(now + self.tick, self._sample)

    def _schedule_events(self, name: str, sim: SimCluster) -> None:
        spec = self.scenario.upstreams[name]
        fleet = sim.fleet
        for fault in spec.faults:
            eps = [fleet.by_name[n] for n in targets(fault, spec)]
            if fault.kind == "back":
                self._at(fault.at, _back, fleet, eps)
                continue
            start = fault.at
            while start < self.duration:
                self._at(start, _start, fleet, eps, fault)
                if fault.duration is not None:
                    self._at(start + fault.duration, _end, fleet, eps, fault)
                if fault.every is None:
                    break
                start += fault.every
        for event in spec.discovery:
            if event.kind == "unavailable":
                self._at(event.at, sim.discovery_failed)
                if event.duration is not None:
                    self._at(event.at + event.duration, sim.discovery_recovered)
                continue
            eps = [fleet.by_name[n] for n in targets(event, spec)]
            listed = event.kind == "add"
            self._at(event.at, _list, fleet, eps, listed)
            if event.duration is not None:
                self._at(event.at + event.duration, _list, fleet, eps, not listed)

    def _at(self, t: float, callback: Any, *args: Any) -> None:
        if t >= self.duration:
            return
        if t <= 0:
            callback(*args)  # before the first request, whatever the timer order
        else:
            self.loop.call_at(t, callback, *args)


def _start(fleet: UpstreamFleet, eps: list[SimEndpoint], fault: FaultSpec) -> None:
    before = fleet.registry()
    for ep in eps:
        ep.start(fault)
    fleet.changed(before)


def _end(fleet: UpstreamFleet, eps: list[SimEndpoint], fault: FaultSpec) -> None:
    before = fleet.registry()
    for ep in eps:
        ep.end(fault)
    fleet.changed(before)


def _back(fleet: UpstreamFleet, eps: list[SimEndpoint]) -> None:
    before = fleet.registry()
    for ep in eps:
        ep.back()
    fleet.changed(before)


def _list(fleet: UpstreamFleet, eps: list[SimEndpoint], listed: bool) -> None:
    before = fleet.registry()
    for ep in eps:
        ep.listed = listed
    fleet.changed(before)


@contextlib.contextmanager
def _quiet_health_log() -> Iterator[None]:
    """Health transitions are logged as warnings live; in a run they are the timeline's."""
    logger = logging.getLogger("pilotfish.health")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
