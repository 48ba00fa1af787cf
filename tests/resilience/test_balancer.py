"""Load-balancing policies: exact sequences, shares, skipping and the shared contract."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilience.balancer import POLICIES, Balancer, build_balancer
from resilience.hashring import HashRing, RingOptions


def always(_: object) -> bool:
    return True


def never(_: object) -> bool:
    return False


def all_but(*excluded: str) -> Callable[[str], bool]:
    return lambda member: member not in excluded


def no_load(_: object) -> int:
    return 0


def build(
    policy: str,
    members: list[tuple[str, int]],
    seed: int = 7,
    load: Callable[[str], int] = no_load,
) -> Balancer[str]:
    return build_balancer(policy, members, rng=random.Random(seed), load=load)


def picks(balancer: Balancer[str], count: int, eligible: Callable[[str], bool] = always) -> list:
    return [balancer.pick(None, eligible) for _ in range(count)]


def shares(balancer: Balancer[str], count: int, eligible: Callable[[str], bool] = always) -> dict:
    counts = Counter(picks(balancer, count, eligible))
    return {member: n / count for member, n in counts.items()}


# --- the shared contract -------------------------------------------------------------------


def test_policies_are_the_five_names_sorted() -> None:
    assert POLICIES == (
        "least_request",
        "random",
        "ring_hash",
        "round_robin",
        "weighted_round_robin",
    )
    assert list(POLICIES) == sorted(POLICIES)


def test_unknown_policy_names_the_choices() -> None:
    with pytest.raises(ValueError) as raised:
        build("fastest", [("a", 1)])
    assert str(raised.value) == (
        "unknown policy 'fastest'; expected one of: least_request, random, ring_hash, "
        "round_robin, weighted_round_robin"
    )


@pytest.mark.parametrize(
    ("members", "message"),
    [([("a", 0)], "weight must be >= 1"), ([("a", 1), ("a", 2)], "listed twice")],
)
@pytest.mark.parametrize("policy", POLICIES)
def test_bad_members_are_rejected(
    policy: str, members: list[tuple[str, int]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build(policy, members)


def test_least_request_needs_load() -> None:
    with pytest.raises(ValueError, match="needs load"):
        build_balancer("least_request", [("a", 1)], rng=random.Random(1))


@pytest.mark.parametrize("hash_key", [None, "session-1"])
@pytest.mark.parametrize("policy", POLICIES)
def test_no_members_gives_none(policy: str, hash_key: str | None) -> None:
    balancer = build(policy, [])
    assert balancer.pick(hash_key, always) is None
    assert balancer.pick(hash_key, never) is None


@pytest.mark.parametrize("hash_key", [None, "session-1"])
@pytest.mark.parametrize("policy", POLICIES)
def test_no_eligible_member_gives_none(policy: str, hash_key: str | None) -> None:
    balancer = build(policy, [("a", 1), ("b", 3), ("c", 2)])
    assert [balancer.pick(hash_key, never) for _ in range(5)] == [None] * 5


@pytest.mark.parametrize("policy", POLICIES)
def test_balancers_carry_their_policy_name(policy: str) -> None:
    assert build(policy, [("a", 1)]).name == policy


@given(
    policy=st.sampled_from(POLICIES),
    weights=st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=12),
    mask=st.lists(st.booleans(), min_size=12, max_size=12),
    seed=st.integers(min_value=0, max_value=2**32),
    keyed=st.booleans(),
)
def test_only_eligible_members_are_picked_and_none_only_when_none_is(
    policy: str, weights: list[int], mask: list[bool], seed: int, keyed: bool
) -> None:
    members = [(f"m{i}", weight) for i, weight in enumerate(weights)]
    allowed = {name for (name, _), ok in zip(members, mask, strict=False) if ok}
    loads = {name: (i * 7) % 5 for i, (name, _) in enumerate(members)}
    balancer = build(policy, members, seed, load=loads.__getitem__)
    for i in range(30):
        picked = balancer.pick(f"k{i}" if keyed else None, allowed.__contains__)
        if allowed:
            assert picked in allowed
        else:
            assert picked is None


# --- round robin ---------------------------------------------------------------------------


def test_round_robin_cycles_members_in_order_from_its_start() -> None:
    members = [("a", 1), ("b", 1), ("c", 1), ("d", 1)]
    sequence = picks(build("round_robin", members), 12)
    start = "abcd".index(sequence[0])
    assert "".join(sequence) == ("abcd" * 4)[start : start + 12]


def test_round_robin_start_is_drawn_from_the_rng() -> None:
    members = [("a", 1), ("b", 1), ("c", 1), ("d", 1)]
    starts = {build("round_robin", members, seed).pick(None, always) for seed in range(40)}
    assert starts == {"a", "b", "c", "d"}


def test_round_robin_shares_are_exactly_equal_whatever_the_weights() -> None:
    members = [("a", 1), ("b", 5), ("c", 9)]
    assert Counter(picks(build("round_robin", members), 3000)) == {"a": 1000, "b": 1000, "c": 1000}


def test_round_robin_skips_ineligible_members_within_one_lap() -> None:
    members = [("a", 1), ("b", 1), ("c", 1), ("d", 1)]
    balancer = build("round_robin", members)
    asked: list[str] = []

    def asking(allowed: set[str]) -> Callable[[str], bool]:
        def eligible(member: str) -> bool:
            asked.append(member)
            return member in allowed

        return eligible

    for _ in range(3):
        asked.clear()
        assert balancer.pick(None, asking({"d"})) == "d"
        assert len(asked) <= len(members)
    asked.clear()
    assert balancer.pick(None, asking(set())) is None
    assert sorted(asked) == ["a", "b", "c", "d"]


def test_round_robin_resumes_after_the_member_it_chose() -> None:
    balancer = build("round_robin", [("a", 1), ("b", 1), ("c", 1)])
    while balancer.pick(None, always) != "c":
        pass
    assert picks(balancer, 4, all_but("b")) == ["a", "c", "a", "c"]
    assert picks(balancer, 3) == ["a", "b", "c"]


# --- weighted random -----------------------------------------------------------------------


def test_random_shares_follow_weights() -> None:
    members = [("a", 1), ("b", 2), ("c", 3), ("d", 4)]
    got = shares(build("random", members, seed=11), 100_000)
    for member, weight in members:
        assert got[member] == pytest.approx(weight / 10, abs=0.01), member


def test_random_with_equal_weights_is_uniform() -> None:
    members = [(name, 1) for name in "abcde"]
    got = shares(build("random", members, seed=12), 50_000)
    assert all(got[name] == pytest.approx(0.2, abs=0.01) for name in "abcde")


def test_random_skips_ineligible_members_and_keeps_weights_among_the_rest() -> None:
    members = [("a", 1), ("b", 2), ("c", 3), ("d", 4)]
    got = shares(build("random", members, seed=13), 30_000, all_but("c"))
    assert "c" not in got
    for member, weight in [("a", 1), ("b", 2), ("d", 4)]:
        assert got[member] == pytest.approx(weight / 7, abs=0.015), member


def test_random_finds_the_rare_eligible_members_by_scanning() -> None:
    members = [(f"m{i}", 5) for i in range(40)] + [("x", 1), ("y", 3)]
    got = shares(build("random", members, seed=14), 8000, {"x", "y"}.__contains__)
    assert set(got) == {"x", "y"}
    assert got["y"] == pytest.approx(0.75, abs=0.03)


# --- smooth weighted round robin -----------------------------------------------------------


def test_smooth_wrr_gives_nginx_sequence_for_5_1_1() -> None:
    balancer = build("weighted_round_robin", [("a", 5), ("b", 1), ("c", 1)])
    assert "".join(picks(balancer, 21)) == "aabacaa" * 3


def test_smooth_wrr_leaves_ineligible_members_out_of_the_round() -> None:
    balancer = build("weighted_round_robin", [("a", 5), ("b", 1), ("c", 1)])
    # With b out, the round is over a=5, c=1 only: a a a c a a (worked by hand).
    assert "".join(picks(balancer, 6, all_but("b"))) == "aaacaa"
    # b banked no credit while out, so once back the 5-1-1 cycle starts afresh.
    assert "".join(picks(balancer, 14)) == "aabacaa" * 2


def test_smooth_wrr_shares_are_exact_over_a_cycle() -> None:
    members = [("a", 3), ("b", 2), ("c", 7)]
    assert Counter(picks(build("weighted_round_robin", members), 120)) == {
        "a": 30,
        "b": 20,
        "c": 70,
    }


def test_smooth_wrr_spreads_a_heavy_member_instead_of_bursting() -> None:
    sequence = "".join(picks(build("weighted_round_robin", [("a", 2), ("b", 2), ("c", 1)]), 50))
    assert "aaa" not in sequence and "bbb" not in sequence


# --- least request -------------------------------------------------------------------------


def test_least_request_prefers_the_less_loaded_of_two() -> None:
    loads = {"busy": 9, "idle": 0}
    balancer = build("least_request", [("busy", 1), ("idle", 1)], load=loads.__getitem__)
    assert set(picks(balancer, 200)) == {"idle"}


def test_least_request_never_picks_the_most_loaded_of_three() -> None:
    loads = {"a": 0, "b": 5, "c": 10}
    balancer = build("least_request", [(m, 1) for m in loads], seed=3, load=loads.__getitem__)
    got = shares(balancer, 30_000)
    # Each of the three pairs is drawn a third of the time and its lighter member wins.
    assert "c" not in got
    assert got["a"] == pytest.approx(2 / 3, abs=0.02)
    assert got["b"] == pytest.approx(1 / 3, abs=0.02)


@pytest.mark.parametrize(
    ("weights", "loads", "winner"),
    [
        ({"a": 2, "b": 1}, {"a": 3, "b": 2}, "a"),  # 3/2 < 2/1
        ({"a": 1, "b": 1}, {"a": 3, "b": 2}, "b"),
        ({"a": 1, "b": 4}, {"a": 1, "b": 3}, "b"),  # 3/4 < 1/1
        ({"a": 3, "b": 1}, {"a": 4, "b": 1}, "b"),  # 1/1 < 4/3
    ],
)
def test_least_request_divides_load_by_weight(
    weights: dict[str, int], loads: dict[str, int], winner: str
) -> None:
    balancer = build("least_request", list(weights.items()), load=loads.__getitem__)
    assert set(picks(balancer, 100)) == {winner}


def test_least_request_returns_the_only_eligible_member_however_loaded() -> None:
    loads = {"a": 0, "b": 100, "c": 0}
    balancer = build("least_request", [(m, 1) for m in loads], load=loads.__getitem__)
    assert set(picks(balancer, 50, {"b"}.__contains__)) == {"b"}


def test_least_request_spreads_evenly_when_loads_tie() -> None:
    members = [(name, 1) for name in "abcd"]
    got = shares(build("least_request", members, seed=5), 40_000)
    assert all(got[name] == pytest.approx(0.25, abs=0.01) for name in "abcd")


# --- ring hash -----------------------------------------------------------------------------


RING_MEMBERS = [(f"10.0.0.{i}:80", 1) for i in range(1, 6)]


def test_ring_hash_maps_keys_like_its_ring_and_exposes_primary() -> None:
    balancer = build_balancer("ring_hash", RING_MEMBERS, rng=random.Random(1))
    ring = HashRing(RING_MEMBERS)
    for i in range(500):
        key = f"user-{i}"
        assert balancer.pick(key, always) == balancer.primary(key) == ring.primary(key)


def test_ring_hash_reports_fallback_through_primary() -> None:
    balancer = build_balancer("ring_hash", RING_MEMBERS, rng=random.Random(1))
    down = "10.0.0.3:80"
    keys = [f"user-{i}" for i in range(500)]
    fell_back = [k for k in keys if balancer.pick(k, all_but(down)) != balancer.primary(k)]
    assert fell_back
    assert fell_back == [k for k in keys if balancer.primary(k) == down]


def test_ring_hash_uses_the_given_ring_options() -> None:
    options = RingOptions(min_ring_size=1, max_ring_size=1000)  # 200 points each, not 2048
    balancer = build_balancer("ring_hash", RING_MEMBERS, rng=random.Random(1), ring=options)
    assert len(balancer.ring) == len(HashRing(RING_MEMBERS, options)) == 1000  # type: ignore[attr-defined]


def test_ring_hash_without_a_key_round_robins() -> None:
    members = [("a", 1), ("b", 3), ("c", 1)]
    sequence = "".join(picks(build("ring_hash", members), 9))
    start = "abc".index(sequence[0])
    assert sequence == ("abc" * 4)[start : start + 9]
    assert "b" not in picks(build("ring_hash", members), 6, all_but("b"))
