"""The simulation's own parts: virtual time, the traffic generator, the fleet model and the
streaming statistics."""

from __future__ import annotations

import asyncio
import math
import random
import tracemalloc
from collections import Counter

import pytest

from sidecar.simulate.fleet import ANSWER, HANG, REFUSE, RESET, SimEndpoint
from sidecar.simulate.load import load_scenario_text
from sidecar.simulate.scenario import EndpointSpec, FaultSpec, Latency, LoadSpec
from sidecar.simulate.stats import MAX_BINS, LogHistogram, UpstreamStats, bin_width
from sidecar.simulate.traffic import Traffic
from sidecar.simulate.vloop import Stalled, VirtualTimeLoop
from tests.simulate.support import config, run

# -- virtual time -------------------------------------------------------------------------


def test_virtual_time_jumps_to_each_timer_in_order():
    loop = VirtualTimeLoop()
    seen: list[tuple[str, float]] = []

    async def sleeper(name: str, delay: float) -> None:
        await asyncio.sleep(delay)
        seen.append((name, loop.time()))

    async def main() -> None:
        await asyncio.gather(sleeper("day", 86400), sleeper("ms", 0.001), sleeper("hour", 3600))
        async with asyncio.timeout(2.5):
            await asyncio.sleep(0.5)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(2.5):
                await asyncio.sleep(10)

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert seen == [("ms", 0.001), ("hour", 3600.0), ("day", 86400.0)]
    assert loop.time() == 86400.0 + 0.5 + 2.5


def test_a_wait_nothing_can_end_stops_the_loop_instead_of_hanging():
    loop = VirtualTimeLoop()
    try:
        with pytest.raises(Stalled):
            loop.run_until_complete(loop.create_future())
    finally:
        loop.close()


# -- traffic ------------------------------------------------------------------------------


def arrivals(load: str, duration: float = 60, seed: int = 1) -> list[float]:
    spec = load_scenario_text(
        f"duration: {duration}\nload: {load}\nupstreams: {{api: {{endpoints: [a]}}}}"
    ).load
    assert isinstance(spec, LoadSpec)
    traffic = Traffic(spec, duration, random.Random(seed))
    out, t = [], traffic.first_arrival()
    while t is not None:
        out.append(t)
        t = traffic.next_arrival(t)
    return out


def test_even_arrivals_are_exact_and_do_not_drift():
    times = arrivals("{rate: 1000, arrivals: even}", duration=600)
    assert len(times) == 600_000
    assert times[-1] == pytest.approx(599.999, abs=1e-9)


def test_poisson_arrivals_average_the_rate():
    times = arrivals("{rate: 500}")
    assert len(times) == pytest.approx(30_000, abs=3 * math.sqrt(30_000))
    assert times == sorted(times) and times[-1] < 60


def test_phases_ramps_and_bursts_add_up():
    load = (
        "{arrivals: even, phases: [{for: 20s, rate: 100}, {for: 20s, from: 100, to: 300}, "
        "{rate: 0}], bursts: [{at: 5s, for: 2s, rate: 400}]}"
    )
    times = arrivals(load)
    per_phase = Counter(int(t // 20) for t in times)
    assert per_phase[0] == 20 * 100 + 2 * 400
    assert per_phase[1] == pytest.approx(20 * 200, rel=0.01)  # the ramp's mean rate
    assert per_phase[2] == 0


def test_zipf_keys_favour_the_first_ones_and_the_mix_is_weighted():
    spec = load_scenario_text(
        "duration: 1s\nload: {rate: 1, keys: {count: 100, distribution: zipf}, mix: "
        "[{method: GET, weight: 3}, {method: POST, weight: 1, body: 1KiB}]}\n"
        "upstreams: {api: {endpoints: [a]}}"
    ).load
    assert spec is not None
    traffic = Traffic(spec, 1, random.Random(3))
    drawn = [traffic.request() for _ in range(20_000)]
    keys = Counter(key for _, _, key in drawn)
    harmonic = sum(1 / k for k in range(1, 101))
    assert keys["k0"] / 20_000 == pytest.approx(1 / harmonic, abs=0.01)
    assert keys["k0"] > keys["k1"] > keys["k9"] > 0
    methods = Counter((m, b) for m, b, _ in drawn)
    assert methods[("POST", 1024)] / 20_000 == pytest.approx(0.25, abs=0.01)


# -- the fleet ----------------------------------------------------------------------------


def fault(**fields: object) -> FaultSpec:
    return FaultSpec(**fields)  # type: ignore[arg-type]


def test_faults_stack_on_an_endpoint_and_back_ends_them_all():
    ep = SimEndpoint(EndpointSpec(name="a"), Latency(fixed=0.01), "seed")
    assert ep.answer() == (ANSWER, 0.01, 200)
    slow = fault(kind="slow", factor=3.0)
    ep.start(slow)
    assert ep.answer() == (ANSWER, pytest.approx(0.03), 200)
    ep.start(fault(kind="errors", status=500))
    assert ep.answer() == (ANSWER, pytest.approx(0.03), 500)  # still slow
    ep.end(slow)
    assert ep.answer() == (ANSWER, 0.01, 500)
    ep.start(fault(kind="gone"))
    assert not ep.registered
    ep.back()
    assert ep.registered and ep.answer() == (ANSWER, 0.01, 200)


def test_probes_meet_only_the_faults_that_say_so():
    ep = SimEndpoint(EndpointSpec(name="a"), Latency(fixed=0.01), "seed")
    ep.start(fault(kind="hang", probes=False))
    assert ep.answer()[0] == HANG
    assert ep.answer(probe=True)[0] == ANSWER
    ep.start(fault(kind="refuse"))
    assert ep.answer(probe=True)[0] == REFUSE


def test_a_fault_with_a_probability_hits_that_share_of_attempts():
    ep = SimEndpoint(EndpointSpec(name="a"), Latency(p50=0.01, p99=0.1), "seed")
    ep.start(fault(kind="reset", probability=0.25))
    answers = Counter(ep.answer()[0] for _ in range(20_000))
    assert answers[RESET] / 20_000 == pytest.approx(0.25, abs=0.01)


def test_log_normal_latency_has_the_p50_and_p99_it_was_given():
    ep = SimEndpoint(EndpointSpec(name="a"), Latency(p50=0.02, p99=0.2), "seed")
    delays = sorted(ep.answer()[1] for _ in range(50_000))
    assert delays[25_000] == pytest.approx(0.02, rel=0.03)
    assert delays[49_500] == pytest.approx(0.2, rel=0.05)


# -- statistics ---------------------------------------------------------------------------


def test_histogram_quantiles_are_within_their_precision():
    rng = random.Random(5)
    values = [rng.lognormvariate(-4, 1.2) for _ in range(50_000)]
    hist = LogHistogram(0.01)
    for v in values:
        hist.add(v)
    values.sort()
    for q in (0.5, 0.9, 0.99, 0.999):
        exact = values[math.ceil(q * len(values)) - 1]
        assert hist.quantile(q) == pytest.approx(exact, rel=0.011)
    assert hist.buckets < 1000


def test_the_timeline_has_at_most_600_round_bins_whatever_the_duration():
    assert [bin_width(d) for d in (60, 600, 3600, 86400)] == [1.0, 1.0, 10.0, 300.0]
    stats = UpstreamStats(["a"], 30 * 86400, keyed=False)
    assert stats.bins <= MAX_BINS


def peak_memory(duration: str) -> int:
    tracemalloc.start()
    try:
        run(
            config(),
            f"duration: {duration}\nload: {{rate: 300}}\nupstreams: {{api: {{endpoints: [a]}}}}",
        )
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_number_of_requests():
    # Ten times the requests (bins of 1 s, so the timeline grows tenfold too, by a few KB).
    short, long = peak_memory("6s"), peak_memory("60s")
    assert long - short < 300_000  # a record per request would be megabytes


def test_a_bug_met_during_a_run_is_raised_not_counted(monkeypatch):
    def broken(*args: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(UpstreamStats, "request_done", broken)
    with pytest.raises(ZeroDivisionError, match="a bug"):
        run(config(), "duration: 5s\nload: {rate: 10}\nupstreams: {api: {endpoints: [a]}}")
