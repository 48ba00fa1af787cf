"""The consistent hash ring: spread, churn, stability and the walk past ineligible members.

Spread statistics: a member owning ``p`` points gets a share whose relative spread is about
``1 / sqrt(p)``; tests that bound the spread size the ring so the bound is several of those
spreads wide, and a fixed key set makes every run identical.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilience.hashring import HashRing, RingOptions, node_name, points_per_weight

KEYS_100K = [f"user-{i}" for i in range(100_000)]
KEYS_10K = KEYS_100K[:10_000]
# 8192 keeps points_per_weight constant for N-1..N+1 members at N=5 (2048) and N=10 (1024).
CHURN_OPTIONS = RingOptions(min_ring_size=8192)


@dataclass(frozen=True)
class Peer:
    """Shaped like ``Endpoint``: an ``id`` plus fields that do not identify the peer."""

    address: str
    port: int
    tags: tuple[str, ...] = field(default=(), compare=False)

    @property
    def id(self) -> str:
        return f"{self.address}:{self.port}"


def nodes(count: int) -> list[tuple[str, int]]:
    return [(f"10.0.0.{i}:8080", 1) for i in range(1, count + 1)]


def mapping(ring: HashRing[str], keys: Sequence[str]) -> list[str | None]:
    return [ring.primary(key) for key in keys]


@cache
def churn_ring(size: int) -> HashRing[str]:
    return HashRing(nodes(size), CHURN_OPTIONS)


@cache
def churn_mapping(size: int) -> tuple[str | None, ...]:
    return tuple(mapping(churn_ring(size), KEYS_10K))


def always(_: object) -> bool:
    return True


def all_but(*excluded: str) -> Callable[[str], bool]:
    return lambda member: member not in excluded


def test_ring_options_default_to_envoys_sizes() -> None:
    assert RingOptions() == RingOptions(min_ring_size=1024, max_ring_size=8_388_608)


@pytest.mark.parametrize(("low", "high"), [(0, 10), (10, 5), (-1, 1)])
def test_ring_options_reject_inconsistent_sizes(low: int, high: int) -> None:
    with pytest.raises(ValueError, match="min_ring_size"):
        RingOptions(min_ring_size=low, max_ring_size=high)


@given(
    total=st.integers(min_value=1, max_value=10_000_000),
    low=st.integers(min_value=1, max_value=100_000),
    spread=st.integers(min_value=0, max_value=10_000_000),
)
def test_points_per_weight_is_the_smallest_power_of_two_reaching_min_within_max(
    total: int, low: int, spread: int
) -> None:
    options = RingOptions(min_ring_size=low, max_ring_size=low + spread)
    per = points_per_weight(total, options)
    if total > options.max_ring_size:
        assert per == 0
        return
    assert per >= 1
    assert per & (per - 1) == 0
    assert per * total <= options.max_ring_size
    reaches_min = per * total >= options.min_ring_size
    halving_would_fit = per > 1 and per // 2 * total >= options.min_ring_size
    doubling_would_fit = per * 2 * total <= options.max_ring_size
    assert not halving_would_fit
    assert reaches_min or not doubling_would_fit


def test_empty_ring_maps_nothing_and_never_raises() -> None:
    ring: HashRing[str] = HashRing([])
    assert len(ring) == 0
    assert ring.primary("k") is None
    assert ring.pick("k", always) is None


def test_each_member_owns_weight_times_points_per_weight_points() -> None:
    ring = HashRing([("a", 1), ("b", 3)], RingOptions(min_ring_size=100))
    per = ring.points_per_weight
    assert per == 32  # smallest power of two with 4 * per >= 100
    assert len(ring) == 4 * per


def test_weights_beyond_max_ring_size_still_give_every_member_a_point() -> None:
    members = [("a", 1), ("b", 1), ("c", 30)]
    ring = HashRing(members, RingOptions(min_ring_size=4, max_ring_size=8))
    assert ring.points_per_weight == 0
    owners = Counter(ring.primary(f"k{i}") for i in range(3000))
    assert set(owners) == {"a", "b", "c"}
    assert len(ring) <= 8 + len(members)


@pytest.mark.parametrize(
    ("members", "message"),
    [([("a", 0)], "weight must be >= 1"), ([("a", 1), ("a", 2)], "same name")],
)
def test_bad_members_are_rejected(members: list[tuple[str, int]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HashRing(members)


def test_five_equal_members_each_get_the_mean_within_five_percent() -> None:
    ring = HashRing(nodes(5), RingOptions(min_ring_size=16384))
    counts = Counter(mapping(ring, KEYS_100K))
    mean = len(KEYS_100K) / 5
    assert len(counts) == 5
    for member, count in counts.items():
        assert abs(count - mean) <= 0.05 * mean, (member, count)


def test_shares_are_proportional_to_weight() -> None:
    members = [("light", 1), ("middle", 2), ("heavy", 3)]
    ring = HashRing(members, RingOptions(min_ring_size=8192))
    counts = Counter(mapping(ring, KEYS_100K[:30_000]))
    for member, weight in members:
        expected = 30_000 * weight / 6
        assert abs(counts[member] - expected) <= 0.05 * expected, (member, counts[member])


@pytest.mark.parametrize("size", [5, 10])
def test_adding_a_member_moves_only_keys_to_it_and_at_most_1_over_n_plus_2_percent(
    size: int,
) -> None:
    after = HashRing([*nodes(size), ("10.0.1.99:8080", 1)], CHURN_OPTIONS)
    assert churn_ring(size).points_per_weight == after.points_per_weight  # same band: premise
    new_map = mapping(after, KEYS_10K)
    pairs = zip(churn_mapping(size), new_map, strict=True)
    moved = [(old, new) for old, new in pairs if old != new]
    assert moved, "a new member must take some keys"
    assert {new for _, new in moved} == {"10.0.1.99:8080"}
    assert len(moved) / len(KEYS_10K) <= 1 / size + 0.02


@pytest.mark.parametrize(("size", "removed"), [(5, 0), (5, 4), (10, 0), (10, 9)])
def test_removing_a_member_moves_only_its_keys_and_at_most_1_over_n_plus_2_percent(
    size: int, removed: int
) -> None:
    members = nodes(size)
    gone = members[removed][0]
    after = HashRing([m for m in members if m[0] != gone], CHURN_OPTIONS)
    assert churn_ring(size).points_per_weight == after.points_per_weight
    old_map, new_map = list(churn_mapping(size)), mapping(after, KEYS_10K)
    moved = [old for old, new in zip(old_map, new_map, strict=True) if old != new]
    assert set(moved) == {gone}
    assert len(moved) == old_map.count(gone)
    assert len(moved) / len(KEYS_10K) <= 1 / size + 0.02


def test_a_key_maps_to_the_same_member_while_membership_is_unchanged() -> None:
    members = nodes(7)
    ring = HashRing(members)
    first = mapping(ring, KEYS_10K)
    assert mapping(ring, KEYS_10K) == first
    shuffled = members[:]
    random.Random(3).shuffle(shuffled)
    assert shuffled != members
    assert mapping(HashRing(shuffled), KEYS_10K) == first
    assert mapping(HashRing(list(reversed(members))), KEYS_10K) == first


def test_members_with_an_id_hash_by_it_so_other_fields_do_not_move_keys() -> None:
    plain = [(Peer("10.0.0.1", 80), 1), (Peer("10.0.0.2", 80), 1)]
    tagged = [(Peer("10.0.0.1", 80, tags=("canary",)), 1), plain[1]]
    assert node_name(plain[0][0]) == "10.0.0.1:80"
    left, right = HashRing(plain), HashRing(tagged)
    left_ids = [getattr(left.primary(key), "id", None) for key in KEYS_10K[:2000]]
    right_ids = [getattr(right.primary(key), "id", None) for key in KEYS_10K[:2000]]
    assert left_ids == right_ids
    assert set(left_ids) == {"10.0.0.1:80", "10.0.0.2:80"}


@pytest.mark.parametrize(("member", "name"), [("a:1", "a:1"), (42, "42"), (("h", 1), "('h', 1)")])
def test_node_name_of_plain_keys(member: object, name: str) -> None:
    assert node_name(member) == name  # type: ignore[arg-type]


def test_keys_that_are_not_valid_utf8_still_hash() -> None:
    ring = HashRing(nodes(3))
    key = b"\xff\xfe".decode("utf-8", "surrogateescape")
    assert ring.primary(key) == ring.primary(key) is not None


@pytest.mark.parametrize("excluded", [("10.0.0.3:8080",), ("10.0.0.1:8080", "10.0.0.2:8080")])
def test_ineligible_members_keys_move_to_their_ring_successor_and_return(
    excluded: tuple[str, ...],
) -> None:
    members = nodes(5)
    ring = churn_ring(5)
    # Skipping a member's points is the same as a ring built without it with the same points
    # per weight: that ring's mapping is each key's next distinct member clockwise.
    remaining = [m for m in members if m[0] not in excluded]
    same_points = RingOptions(min_ring_size=ring.points_per_weight * len(remaining))
    without = HashRing(remaining, same_points)
    assert without.points_per_weight == ring.points_per_weight
    skipping = all_but(*excluded)
    for key, primary in zip(KEYS_10K, churn_mapping(5), strict=True):
        picked = ring.pick(key, skipping)
        if primary in excluded:
            assert picked == without.primary(key) and picked not in excluded
        else:
            assert picked == primary
    back = [ring.pick(key, always) for key in KEYS_10K]
    assert back == list(churn_mapping(5))


def test_walk_asks_each_distinct_member_at_most_once_and_ends_with_none() -> None:
    ring = HashRing(nodes(10))
    asked: list[str] = []

    def refuse(member: str) -> bool:
        asked.append(member)
        return False

    for key in KEYS_10K[:300]:
        asked.clear()
        assert ring.pick(key, refuse) is None
        assert sorted(asked) == sorted(name for name, _ in nodes(10))


def test_walk_finds_the_only_eligible_member_from_anywhere() -> None:
    ring = HashRing(nodes(10))
    for key in KEYS_10K[:300]:
        assert ring.pick(key, lambda m: m == "10.0.0.6:8080") == "10.0.0.6:8080"


def test_single_member_ring() -> None:
    ring = HashRing([("only", 1)])
    assert ring.primary("k") == "only"
    assert ring.pick("k", always) == "only"
    assert ring.pick("k", all_but("only")) is None
