"""Simulated numbers against arithmetic: each policy, alone, gives what a hand computes."""

from __future__ import annotations

import pytest

from tests.simulate.support import BARE, config, run

ONE_OF_THREE_REFUSING = """
duration: 30s
load: {rate: 1000}
upstreams:
  api:
    endpoints: [a, b, c]
    faults: [{endpoint: c, kind: refuse}]
"""


def test_one_refusing_endpoint_with_retries_costs_only_its_share_before_ejection():
    s = run(config(), ONE_OF_THREE_REFUSING)
    assert s["success_rate"] >= 0.999
    # Every attempt on c failed and was retried once, successfully, elsewhere: each one
    # adds exactly one attempt to a request.
    failed = s["attempts_by_outcome"]["connect_failure"]
    assert s["traffic_share"]["c"] == pytest.approx(failed / s["attempts"], abs=1e-6)
    assert s["amplification"] == pytest.approx(1 + failed / s["requests"], abs=1e-6)
    assert s["retries"] == failed
    # c's share before it was ejected (and again after each ejection ran out) is small.
    assert s["amplification"] < 1.001
    assert s["ejection_log"][0]["endpoint"] == "c"
    assert s["ejection_log"][0]["failures"] == 5  # consecutive_local_origin_failure's default


@pytest.mark.parametrize("policy", ["round_robin", "random"])
def test_one_refusing_endpoint_without_retries_or_ejection_fails_a_third(policy):
    s = run(config(balancer={"policy": policy}, **BARE), ONE_OF_THREE_REFUSING)
    assert s["success_rate"] == pytest.approx(2 / 3, abs=0.01)
    assert s["amplification"] == 1.0
    assert s["client_answers"]["502 connect_failure"] == s["attempts_by_outcome"]["connect_failure"]


RETRY_STORM = """
duration: 60s
load: {rate: 1000}
upstreams:
  api:
    endpoints: [a, b, c]
    faults: [{kind: errors, status: 503, probability: 0.5}]
"""


@pytest.mark.parametrize(("ratio", "min_per_second"), [(0.2, 10), (0.1, 50)])
def test_a_retry_storm_is_capped_by_the_budget(ratio, min_per_second):
    budget = {"ratio": ratio, "min_per_second": min_per_second}
    cfg = config(
        retries={"attempts": 2, "budget": budget},
        outlier_detection=None,
        circuit_breakers={"endpoint": None},
    )
    s = run(cfg, RETRY_STORM)
    # Without a budget two retries of a 50 % failure would make 1.75 attempts a request.
    assert s["amplification"] == pytest.approx(1 + ratio + min_per_second / 1000, rel=0.02)
    assert s["retry_budget_exhausted"] > 0


RING = """
duration: 90s
load:
  rate: 500
  keys: {count: 1000}
upstreams:
  api:
    endpoints: [a, b, c, d, e]
    faults: [{endpoint: c, kind: %s, at: 20s, for: 20s}]
"""


@pytest.mark.parametrize("kind", ["gone", "refuse"])
def test_ring_hash_moves_only_the_keys_of_the_endpoint_that_went_and_brings_them_back(kind):
    cfg = config(balancer={"policy": "ring_hash", "hash_on": "header:x-user"})
    keys = run(cfg, RING % kind)["keys"]
    assert keys["seen"] == 1000
    # c held about a fifth of the keys; only they moved, and every one came back.
    assert 0.1 < keys["moved_share"] <= 1 / 5 + 0.02
    assert keys["away_at_end"] == 0


def test_ring_hash_keys_stay_home_when_nothing_fails():
    cfg = config(balancer={"policy": "ring_hash", "hash_on": "header:x-user"})
    keys = run(cfg, (RING % "slow").replace("for: 20s}", "for: 20s, factor: 2}"))["keys"]
    assert keys["moved"] == 0
    assert keys["fallback_attempts"] == 0
