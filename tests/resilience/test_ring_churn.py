"""Churn of the hash ring: what moves when one member joins, leaves or changes weight.

Keys are 20,000 fixed strings. "Moves" means the primary member of a key differs between the
ring before and the ring after. The exact claims (every moved key moved to or from the member
that changed; none between two members that both stayed) hold for every example. The amount
is bounded by the member's weight share plus ``allowance``: one percentage point, or where
a member's share is large, four standard deviations of what 20,000 keys and 2048 points per
member can show (sampling alone is 0.35 points at a share of one half).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from math import sqrt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilience.hashring import POINTS_PER_ENDPOINT, HashRing, RingOptions, points_per_endpoint

KEYS = tuple(f"user-{i}" for i in range(20_000))
Members = tuple[tuple[str, int], ...]
NEWCOMER = "10.9.9.9:8080"
DEFAULTS = RingOptions()


def nodes(weights: Sequence[int]) -> Members:
    return tuple((f"10.0.{i // 250}.{i % 250 + 1}:8080", w) for i, w in enumerate(weights))


@lru_cache(maxsize=32)
def mapping(members: Members, options: RingOptions = DEFAULTS) -> tuple[str | None, ...]:
    ring = HashRing(list(members), options)
    return tuple(ring.primary(key) for key in KEYS)


def allowance(share: float, points: int = POINTS_PER_ENDPOINT) -> float:
    spread = sqrt(share * (1 - share) / len(KEYS) + share * share * (1 - share) / points)
    return max(0.01, 4 * spread)


def moved(
    before: Members,
    after: Members,
    options: RingOptions = DEFAULTS,
    options_after: RingOptions | None = None,
) -> list[tuple[str | None, str | None]]:
    old, new = mapping(before, options), mapping(after, options_after or options)
    return [(was, now) for was, now in zip(old, new, strict=True) if was != now]


def assert_only_its_keys_move(before: Members, after: Members, name: str) -> None:
    """Every moved key moved to ``name`` (it joined) or from it (it left), and the moved
    keys are all the keys it holds: no key moved between two members that stayed."""
    changes = moved(before, after)
    weights = dict(after) if name in dict(after) else dict(before)
    if name in dict(after):
        assert {now for _, now in changes} <= {name}
        assert len(changes) == mapping(after).count(name)
    else:
        assert {was for was, _ in changes} <= {name}
        assert len(changes) == mapping(before).count(name)
    share = weights[name] / sum(weights.values())
    assert len(changes) / len(KEYS) <= share + allowance(share)


@settings(max_examples=6, deadline=None)
@given(count=st.integers(min_value=1, max_value=200), data=st.data())
def test_one_of_1_to_200_equal_members_joining_or_leaving_moves_only_its_keys(
    count: int, data: st.DataObject
) -> None:
    """A join read backwards is a leave: one pair of rings checks both."""
    members = nodes([1] * count)
    name = members[data.draw(st.integers(min_value=0, max_value=count - 1), label="member")][0]
    others = tuple(m for m in members if m[0] != name)
    assert_only_its_keys_move(others, members, name)
    assert_only_its_keys_move(members, others, name)


weights_1_to_100 = st.lists(st.integers(min_value=1, max_value=100), min_size=1, max_size=20)


@settings(max_examples=15, deadline=None)
@given(weights=weights_1_to_100, data=st.data())
def test_one_of_1_to_20_weighted_members_joining_or_leaving_moves_only_its_keys(
    weights: list[int], data: st.DataObject
) -> None:
    members = nodes(weights)
    if data.draw(st.booleans(), label="joins"):
        weight = data.draw(st.integers(min_value=1, max_value=100), label="weight")
        assert_only_its_keys_move(members, (*members, (NEWCOMER, weight)), NEWCOMER)
    else:
        leaving = data.draw(st.integers(min_value=0, max_value=len(weights) - 1), label="leaving")
        name = members[leaving][0]
        assert_only_its_keys_move(members, tuple(m for m in members if m[0] != name), name)


@settings(max_examples=15, deadline=None)
@given(weights=weights_1_to_100, data=st.data())
def test_a_weight_change_moves_keys_only_to_or_from_that_member(
    weights: list[int], data: st.DataObject
) -> None:
    index = data.draw(st.integers(min_value=0, max_value=len(weights) - 1), label="index")
    weight = data.draw(st.integers(min_value=1, max_value=100), label="new weight")
    before = nodes(weights)
    after = nodes([*weights[:index], weight, *weights[index + 1 :]])
    name = before[index][0]
    changes = moved(before, after)
    if weight > weights[index]:
        assert {now for _, now in changes} <= {name}
    else:
        assert {was for was, _ in changes} <= {name}
    # |w - w'| / total, with the larger of the two totals (the smaller gives a looser bound)
    bound = abs(weight - weights[index]) / max(sum(weights), sum(weights) - weights[index] + weight)
    assert len(changes) / len(KEYS) <= bound + allowance(bound)


# --- where the options change the points per endpoint ------------------------------------------


@pytest.mark.parametrize(
    ("count", "options"),
    [
        # max_ring_size binds: 3000 // 5 = 600 points each, then 3000 // 6 = 500
        (5, RingOptions(min_ring_size=1, max_ring_size=3000)),
        (40, RingOptions(min_ring_size=1, max_ring_size=40_000)),
        # min_ring_size binds: ceil(16384 / 3) = 5462 points each, then 4096
        (3, RingOptions(min_ring_size=16_384)),
    ],
)
def test_where_the_sizes_bind_a_join_also_moves_the_keys_of_the_points_that_change(
    count: int, options: RingOptions
) -> None:
    before = nodes([1] * count)
    after = (*before, (NEWCOMER, 1))
    per_before, per_after = (
        points_per_endpoint(count, options),
        points_per_endpoint(count + 1, options),
    )
    assert per_before != per_after  # the premise: the sizes bind here
    # From the old members at the new count of points, the join moves keys only to the
    # newcomer ...
    fixed = RingOptions(min_ring_size=per_after * count, max_ring_size=per_after * count)
    assert points_per_endpoint(count, fixed) == per_after
    assert {now for _, now in moved(before, after, fixed, options)} == {NEWCOMER}
    # ... and changing the count alone moves about the share of the points that went or came.
    resized = moved(before, before, options, fixed)
    tail = abs(per_before - per_after) / max(per_before, per_after)
    assert 0 < len(resized) / len(KEYS) <= tail + allowance(tail)
    total = moved(before, after, options)
    share = 1 / (count + 1)
    assert len(total) / len(KEYS) <= share + tail + allowance(share) + allowance(tail)
    assert len(total) / len(KEYS) > share - allowance(share)


def test_the_default_sizes_bind_only_beyond_4096_equal_members() -> None:
    assert {points_per_endpoint(n, DEFAULTS) for n in range(1, 4097)} == {2048}
    assert points_per_endpoint(4097, DEFAULTS) == 2047
