"""The consistent hash ring: sizing, who owns a key, balance, stability and the fallback.

Spread statistics: with ``p`` points a member holding share ``s`` of the key space deviates
from its weight share by about ``s * sqrt((1 - s) / p)``; exact shares come from
``HashRing.shares`` (no sampling), so every bound here is a fixed outcome of fixed names,
checked with room of several of those spreads. Churn across memberships is in
test_ring_churn.py.
"""

from __future__ import annotations

import random
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cache

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilience.hashring import (
    POINTS_PER_ENDPOINT,
    HashRing,
    RingOptions,
    key_position,
    node_name,
    points_per_endpoint,
)
from resilience.ringbuild import member_points
from resilience.ringregions import weighted_regions

KEYS = [f"user-{i}" for i in range(20_000)]
SPAN = 1 << 32
RANK_BITS = 20
RANK = (1 << RANK_BITS) - 1
# Rings small enough to check against a brute force over every point.
FEW_POINTS = RingOptions(min_ring_size=1, max_ring_size=60)


@dataclass(frozen=True)
class Peer:
    """Shaped like ``Endpoint``: an ``id`` plus fields that do not identify the peer."""

    address: str
    port: int
    tags: tuple[str, ...] = field(default=(), compare=False)

    @property
    def id(self) -> str:
        return f"{self.address}:{self.port}"


def nodes(count: int, weight: int = 1) -> list[tuple[str, int]]:
    return [(f"10.0.{i // 250}.{i % 250 + 1}:8080", weight) for i in range(count)]


@cache
def ring_of(count: int) -> HashRing[str]:
    return HashRing(nodes(count))


def mapping(ring: HashRing[str], keys: Sequence[str] = KEYS) -> list[str | None]:
    return [ring.primary(key) for key in keys]


def always(_: object) -> bool:
    return True


def all_but(*excluded: str) -> Callable[[str], bool]:
    return lambda member: member not in excluded


def brute_owner(ring: HashRing[str], weights: dict[str, int], key: str) -> str:
    """The lowest ``distance / weight`` over every point; the nearer point, then the lower
    name, on a tie."""
    at = key_position(key)
    nearest: dict[str, int] = {}
    for position, member in ring.positions():
        distance = (position - at) % SPAN
        nearest[member] = min(distance, nearest.get(member, SPAN))
    return min(nearest, key=lambda m: (nearest[m] / weights[m], nearest[m], m))


# --- sizing ----------------------------------------------------------------------------------


def test_ring_options_default_to_envoys_sizes() -> None:
    assert RingOptions() == RingOptions(min_ring_size=1024, max_ring_size=8_388_608)


@pytest.mark.parametrize(("low", "high"), [(0, 10), (10, 5), (-1, 1)])
def test_ring_options_reject_inconsistent_sizes(low: int, high: int) -> None:
    with pytest.raises(ValueError, match="min_ring_size"):
        RingOptions(min_ring_size=low, max_ring_size=high)


@pytest.mark.parametrize(
    ("members", "options", "per"),
    [
        (1, RingOptions(), 2048),  # the default minimum never binds
        (4096, RingOptions(), 2048),  # the default maximum binds only beyond this
        (4097, RingOptions(), 2047),
        (3, RingOptions(min_ring_size=16_384), 5462),  # ceil(16384 / 3)
        (8, RingOptions(min_ring_size=16_384), 2048),
        (10, RingOptions(min_ring_size=1, max_ring_size=1000), 100),
        (30, RingOptions(min_ring_size=1, max_ring_size=20), 1),  # never below one point
        (0, RingOptions(), 0),
    ],
)
def test_points_per_endpoint(members: int, options: RingOptions, per: int) -> None:
    assert POINTS_PER_ENDPOINT == 2048
    assert points_per_endpoint(members, options) == per


@given(
    members=st.integers(min_value=1, max_value=100_000),
    low=st.integers(min_value=1, max_value=1_000_000),
    spread=st.integers(min_value=0, max_value=10_000_000),
)
def test_points_per_endpoint_is_2048_unless_the_sizes_force_otherwise(
    members: int, low: int, spread: int
) -> None:
    options = RingOptions(min_ring_size=low, max_ring_size=low + spread)
    per = points_per_endpoint(members, options)
    assert per >= 1
    if per > 1:
        assert per * members <= options.max_ring_size
    if POINTS_PER_ENDPOINT * members < options.min_ring_size:
        # the fewest points reaching the minimum, unless that would pass the maximum
        assert (
            per * members >= options.min_ring_size
            or per * members > options.max_ring_size - members
        )
        assert (per - 1) * members < options.min_ring_size
    elif POINTS_PER_ENDPOINT * members <= options.max_ring_size:
        assert per == POINTS_PER_ENDPOINT


def test_empty_ring_maps_nothing_and_never_raises() -> None:
    ring: HashRing[str] = HashRing([])
    assert len(ring) == 0
    assert ring.primary("k") is None
    assert ring.pick("k", always) is None
    assert ring.shares() == {}


@pytest.mark.parametrize(
    ("members", "message"),
    [([("a", 0)], "weight must be >= 1"), ([("a", 1), ("a", 2)], "same name")],
)
def test_bad_members_are_rejected(members: list[tuple[str, int]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HashRing(members)


def test_every_member_owns_the_same_points_whatever_its_weight() -> None:
    ring = HashRing([("a", 1), ("b", 3), ("c", 100)])
    assert ring.points_per_endpoint == 2048
    assert len(ring) == 3 * 2048
    assert Counter(member for _, member in ring.positions()) == {m: 2048 for m in "abc"}


def test_points_are_sorted_by_position() -> None:
    positions = [position for position, _ in ring_of(20).positions()]
    assert positions == sorted(positions)
    assert positions[0] >= 0 and positions[-1] < SPAN


def test_more_points_extend_a_members_sequence_and_never_change_it() -> None:
    short, long = member_points("10.0.0.1:8080", 100, 5), member_points("10.0.0.1:8080", 300, 5)
    assert list(long[:100]) == list(short)
    assert {point & RANK for point in long} == {5}
    assert len({point >> RANK_BITS for point in long}) == 300


def test_a_members_points_do_not_depend_on_the_other_members() -> None:
    def points_of(member: str, ring: HashRing[str]) -> list[int]:
        return [position for position, owner in ring.positions() if owner == member]

    alone = HashRing([("10.0.0.1:8080", 1)])
    crowded = HashRing([("10.0.0.1:8080", 7), *nodes(30)[1:]])
    assert points_of("10.0.0.1:8080", alone) == points_of("10.0.0.1:8080", crowded)


# --- who owns a key --------------------------------------------------------------------------


def test_with_equal_weights_a_key_belongs_to_the_next_point_clockwise() -> None:
    ring = ring_of(7)
    points = ring.positions()
    positions = [position for position, _ in points]
    for key in KEYS[:2000]:
        i = bisect_left(positions, key_position(key))
        assert ring.primary(key) == points[i % len(points)][1]


@pytest.mark.parametrize("seed", range(12))
def test_with_weights_a_key_belongs_to_the_smallest_distance_over_weight(seed: int) -> None:
    rng = random.Random(seed)
    count = rng.randint(2, 6)
    weights = {f"h{i}": rng.choice([1, 2, 3, rng.randint(1, 100)]) for i in range(count)}
    # Few points, so keys often belong to points far away and past the wrap.
    ring = HashRing(list(weights.items()), FEW_POINTS)
    for key in KEYS[:500]:
        assert ring.primary(key) == brute_owner(ring, weights, key), key


def test_weighted_regions_by_hand() -> None:
    def packed(position: int, rank: int) -> int:
        return (position << RANK_BITS) | rank

    # rank 0 (weight 1) at 100, rank 1 (weight 3) at 400: rank 0 wins 100 - x < (400 - x) / 3,
    # that is x > -50, so from 0 to 100; rank 1 wins up to 400 and, past the wrap, down to
    # x > 2**32 - 50 (where 2**32 + 100 - x < (400 - x) / 3 stops holding).
    regions = weighted_regions([packed(100, 0), packed(400, 1)], [1, 3])
    assert regions == [packed(100, 0), packed(400, 1), packed(SPAN - 51, 1)]
    # Two points at one position: the lower rank owns the position itself, the heavier the
    # keys before it.
    regions = weighted_regions([packed(7, 0), packed(7, 1)], [1, 2])
    assert regions == [packed(6, 1), packed(7, 0)]  # past 7, the wrap: rank 1 again
    # Equal weights: every point owns the keys up to it.
    points = [packed(5, 1), packed(9, 0), packed(30, 2)]
    assert weighted_regions(points, [4, 4, 4]) == points


@given(
    spots=st.lists(
        st.tuples(st.integers(min_value=0, max_value=63), st.integers(min_value=0, max_value=3)),
        min_size=1,
        max_size=12,
    ),
    weights=st.lists(st.integers(min_value=1, max_value=9), min_size=4, max_size=4),
)
def test_weighted_regions_agree_with_the_bids_at_every_position(
    spots: list[tuple[int, int]], weights: list[int]
) -> None:
    """On a ring with few positions in use (ties included, since positions repeat), the
    owner of every probed key position, region ends and their neighbours among them, is the
    lowest bid."""
    scale = SPAN // 64
    points = sorted({(position * scale << RANK_BITS) | rank for position, rank in spots})
    regions = weighted_regions(points, weights)
    ends = [value >> RANK_BITS for value in regions]
    assert ends == sorted(ends)
    assert len(ends) == len(set(ends))
    probes = {*range(0, SPAN, scale // 4), *ends, *((end + 1) % SPAN for end in ends)}
    for x in probes:

        def bid(point: int, x: int = x) -> tuple[Fraction, int, int]:
            distance = ((point >> RANK_BITS) - x) % SPAN
            return Fraction(distance, weights[point & RANK]), distance, point & RANK

        i = bisect_left(ends, x)
        assert regions[i % len(regions)] & RANK == min(map(bid, points))[2], x


def test_the_same_members_in_any_order_build_the_same_ring() -> None:
    members = nodes(7)
    first = mapping(HashRing(members), KEYS[:5000])
    shuffled = members[:]
    random.Random(3).shuffle(shuffled)
    assert shuffled != members
    assert mapping(HashRing(shuffled), KEYS[:5000]) == first
    assert mapping(HashRing(list(reversed(members))), KEYS[:5000]) == first


def test_the_ring_is_the_same_in_every_process() -> None:
    """Fixed values, from the standard hashes alone (no salted ``hash()``): a change here
    moves keys between sidecars that run different versions."""
    # the first 4 bytes of BLAKE2s-256, big-endian
    assert key_position("user-1") == 0x90392D74
    # SHAKE-256 read as little-endian 64-bit words; the top 32 bits above the rank
    assert member_points("10.0.0.1:8080", 2, 0).tolist() == [0x1903883F00000, 0x7C79434F00000]
    assert mapping(ring_of(5), [f"user-{i}" for i in range(6)]) == [
        "10.0.0.4:8080",
        "10.0.0.2:8080",
        "10.0.0.1:8080",
        "10.0.0.2:8080",
        "10.0.0.4:8080",
        "10.0.0.2:8080",
    ]


def test_members_with_an_id_hash_by_it_so_other_fields_do_not_move_keys() -> None:
    plain = [(Peer("10.0.0.1", 80), 1), (Peer("10.0.0.2", 80), 1)]
    tagged = [(Peer("10.0.0.1", 80, tags=("canary",)), 1), plain[1]]
    assert node_name(plain[0][0]) == "10.0.0.1:80"
    left, right = HashRing(plain), HashRing(tagged)
    left_ids = [getattr(left.primary(key), "id", None) for key in KEYS[:2000]]
    right_ids = [getattr(right.primary(key), "id", None) for key in KEYS[:2000]]
    assert left_ids == right_ids
    assert set(left_ids) == {"10.0.0.1:80", "10.0.0.2:80"}


@pytest.mark.parametrize(("member", "name"), [("a:1", "a:1"), (42, "42"), (("h", 1), "('h', 1)")])
def test_node_name_of_plain_keys(member: object, name: str) -> None:
    assert node_name(member) == name  # type: ignore[arg-type]


def test_keys_that_are_not_valid_utf8_still_hash() -> None:
    ring = ring_of(3)
    key = b"\xff\xfe".decode("utf-8", "surrogateescape")
    assert ring.primary(key) == ring.pick(key, always) is not None


# --- balance ---------------------------------------------------------------------------------


def test_three_to_fifty_equal_members_each_hold_their_share_within_ten_percent() -> None:
    worst = 0.0
    for count in range(3, 51):
        shares = ring_of(count).shares()
        assert len(shares) == count
        assert sum(shares.values()) == pytest.approx(1.0)
        worst = max(worst, *(abs(share * count - 1) for share in shares.values()))
    assert worst <= 0.10
    assert worst > 0.02  # a real spread, not a degenerate ring


def test_shares_match_the_keys_each_member_gets() -> None:
    ring = HashRing([("light", 1), ("middle", 2), ("heavy", 3), ("huge", 50)])
    shares = ring.shares()
    counts = Counter(mapping(ring, KEYS))
    for member, share in shares.items():
        sampling = (share * (1 - share) / len(KEYS)) ** 0.5
        assert abs(counts[member] / len(KEYS) - share) <= 4 * sampling, member


@pytest.mark.parametrize(
    "weights",
    [[1, 2, 3], [1, 1, 1, 10], [1, 100], [5, 7, 9, 11, 50, 99], [1] * 19 + [100]],
)
def test_shares_are_proportional_to_weight(weights: list[int]) -> None:
    members = [(f"10.0.0.{i}:8080", w) for i, w in enumerate(weights, 1)]
    total = sum(weights)
    for member, share in HashRing(members).shares().items():
        expected = dict(members)[member] / total
        spread = expected * ((1 - expected) / POINTS_PER_ENDPOINT) ** 0.5
        assert abs(share - expected) <= 4 * spread, (member, share, expected)


# --- the fallback ----------------------------------------------------------------------------


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("excluded", [("h3",), ("h1", "h2"), ("h0", "h4", "h5", "h6")])
def test_ineligible_members_keys_go_where_the_ring_without_them_maps_them(
    weighted: bool, excluded: tuple[str, ...]
) -> None:
    weights = [1, 2, 5, 1, 9, 3, 4] if weighted else [1] * 7
    members = [(f"h{i}", w) for i, w in enumerate(weights)]
    ring = HashRing(members)
    without = HashRing([m for m in members if m[0] not in excluded])
    skipping = all_but(*excluded)
    moved = 0
    for key in KEYS[:5000]:
        picked = ring.pick(key, skipping)
        assert picked == without.primary(key)
        if ring.primary(key) in excluded:
            moved += 1
        else:
            assert picked == ring.primary(key)
    assert moved > 0
    assert [ring.pick(key, always) for key in KEYS[:5000]] == mapping(ring, KEYS[:5000])


@pytest.mark.parametrize("weighted", [False, True])
def test_fallback_asks_each_member_at_most_once_and_ends_with_none(weighted: bool) -> None:
    members = [(f"h{i}", (i % 4) + 1 if weighted else 1) for i in range(10)]
    ring = HashRing(members)
    asked: list[str] = []

    def refuse(member: str) -> bool:
        asked.append(member)
        return False

    for key in KEYS[:300]:
        asked.clear()
        assert ring.pick(key, refuse) is None
        assert sorted(asked) == sorted(name for name, _ in members)


@pytest.mark.parametrize("weighted", [False, True])
def test_fallback_finds_the_only_eligible_member_from_anywhere(weighted: bool) -> None:
    members = [(f"h{i}", (i % 4) + 1 if weighted else 1) for i in range(10)]
    ring = HashRing(members)
    for key in KEYS[:300]:
        assert ring.pick(key, lambda m: m == "h6") == "h6"


def test_single_member_ring() -> None:
    ring = HashRing([("only", 5)])
    assert ring.primary("k") == "only"
    assert ring.pick("k", always) == "only"
    assert ring.pick("k", all_but("only")) is None
    assert ring.shares() == {"only": 1.0}
