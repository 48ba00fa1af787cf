"""A ring edited from the previous one is the ring built from scratch, bit for bit.

"Bit for bit": the same points in the same order with the same members, the same region
ends on a weighted ring, the same slice tables, and so the same answer to every lookup and
fallback. Slots (which index a point's member) may differ and are compared through the
members they name. Most examples run with few points per member (``few_points``) so that
hypothesis can try many; the figures that depend on 2048 points are in test_hashring.py.
"""

from __future__ import annotations

import gc
import random
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resilience import hashring, ringbuild
from resilience.hashring import HashRing, RingOptions
from resilience.ringbuild import SLOT, SLOT_BITS, finish, table, with_member, without_member
from resilience.ringregions import distinct_points, weighted_regions

POOL = [f"10.0.0.{i}:8080" for i in range(1, 25)]
KEYS = [f"user-{i}" for i in range(400)]
ANY_SIZE = RingOptions(min_ring_size=1, max_ring_size=1 << 30)
# The fixtures patch the module for the whole test; every example runs under them alike.
FIXTURES = [HealthCheck.function_scoped_fixture]


@pytest.fixture
def few_points(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """48 points per member: the same code on rings small enough for many examples."""
    monkeypatch.setattr(hashring, "POINTS_PER_ENDPOINT", 48)
    yield


@pytest.fixture
def crowded(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Positions cut to their top 7 bits: points share positions all the time, within a
    member and between members, where with 32 bits a few among 400,000 do."""
    original = ringbuild._packed
    keep = (((1 << 7) - 1) << (32 - 7) << SLOT_BITS) | SLOT | (0xFFF << 52)

    def packed(text: str, count: int, slot: int, flags: int = 0) -> int:
        ones, _ = ringbuild._fields(count)
        return original(text, count, slot, flags) & (keep * ones)

    monkeypatch.setattr(ringbuild, "_packed", packed)
    yield


def canonical(ring: HashRing[str]) -> dict[str, Any]:
    owners, starts, shift, members = ring._lookup
    return {
        "points": ring.positions(),
        "owners": [(value >> SLOT_BITS, members[value & SLOT]) for value in owners],
        "owner_table": (starts.tolist(), shift),
        "point_table": (ring._point_starts.tolist(), ring._point_shift),
        "per": ring.points_per_endpoint,
        "shares": ring.shares(),
    }


def assert_same(edited: HashRing[str], scratch: HashRing[str], seed: int) -> None:
    assert canonical(edited) == canonical(scratch)
    rng = random.Random(seed)
    down = set(rng.sample(sorted(scratch.shares()), k=len(scratch.shares()) // 2))
    for key in KEYS[:100]:
        assert edited.primary(key) == scratch.primary(key)
        assert edited.pick(key, lambda m: m not in down) == scratch.pick(
            key, lambda m: m not in down
        )


Change = tuple[str, str, int]  # ("join" | "leave" | "weigh", member, weight)


def changes(weights: list[int]) -> st.SearchStrategy[list[list[Change]]]:
    """Lists of changes, one list per rebuild (mostly one change, sometimes several)."""
    change = st.tuples(
        st.sampled_from(["join", "leave", "weigh"]),
        st.sampled_from(POOL),
        st.sampled_from(weights),
    )
    return st.lists(st.lists(change, min_size=1, max_size=3), min_size=1, max_size=8)


def apply(members: dict[str, int], batch: list[Change]) -> None:
    for kind, member, weight in batch:
        if kind == "leave":
            members.pop(member, None)
        else:
            members[member] = weight


def replay(start: dict[str, int], steps: list[list[Change]], options: RingOptions) -> None:
    members = dict(start)
    ring: HashRing[str] = HashRing(list(members.items()), options)
    for i, batch in enumerate(steps):
        apply(members, batch)
        edited = HashRing(list(members.items()), options, previous=ring)
        assert_same(edited, HashRing(list(members.items()), options), seed=i)
        ring = edited


WEIGHT_SETS = [[1], [1, 2], [10, 10, 10, 1], [1, 2, 3, 4, 5], [1, 1, 1, 9], [3, 100]]


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURES)
@given(
    weights=st.sampled_from(WEIGHT_SETS),
    start=st.dictionaries(st.sampled_from(POOL), st.sampled_from([1, 2, 10]), max_size=16),
    data=st.data(),
)
def test_random_joins_leaves_and_weight_changes_give_the_ring_built_from_scratch(
    few_points: None, weights: list[int], start: dict[str, int], data: st.DataObject
) -> None:
    replay(start, data.draw(changes(weights), label="changes"), ANY_SIZE)


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURES)
@given(
    weights=st.sampled_from(WEIGHT_SETS),
    start=st.dictionaries(st.sampled_from(POOL[:10]), st.sampled_from([1, 2, 10]), max_size=8),
    data=st.data(),
)
def test_with_points_sharing_positions_the_edited_ring_is_the_same(
    few_points: None,
    crowded: None,
    weights: list[int],
    start: dict[str, int],
    data: st.DataObject,
) -> None:
    replay(start, data.draw(changes(weights), label="changes"), ANY_SIZE)


@settings(max_examples=25, deadline=None, suppress_health_check=FIXTURES)
@given(
    start=st.dictionaries(st.sampled_from(POOL), st.sampled_from([1, 2]), min_size=1),
    data=st.data(),
)
def test_where_the_sizes_change_the_points_per_member_the_ring_is_built_afresh(
    few_points: None, start: dict[str, int], data: st.DataObject
) -> None:
    """max_ring_size binds: a join or leave changes every member's count of points."""
    replay(start, data.draw(changes([1, 2]), label="changes"), RingOptions(1, 400))


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ({m: 1 for m in POOL[:12]}, {m: 1 for m in POOL[:13]}),  # a join
        ({m: 1 for m in POOL[:12]}, {m: 1 for m in POOL[1:12]}),  # a leave
        ({m: 10 for m in POOL[:12]}, {**{m: 10 for m in POOL[:12]}, POOL[3]: 1}),  # a canary
        ({**{m: 10 for m in POOL[:12]}, POOL[3]: 1}, {m: 10 for m in POOL[:12]}),
        (
            {m: 1 + i % 4 for i, m in enumerate(POOL[:12])},
            {m: 1 + i % 4 for i, m in enumerate(POOL[:13])},
        ),
        (
            {m: 1 + i % 4 for i, m in enumerate(POOL[:12])},
            {m: 1 + i % 3 for i, m in enumerate(POOL[:12])},
        ),
        ({**{m: 1 for m in POOL[:12]}, POOL[0]: 50}, {**{m: 1 for m in POOL[:13]}, POOL[0]: 50}),
    ],
)
def test_with_2048_points_the_edited_ring_is_the_same(
    before: dict[str, int], after: dict[str, int]
) -> None:
    edited = HashRing(list(after.items()), previous=HashRing(list(before.items())))
    assert edited.points_per_endpoint == 2048
    assert_same(edited, HashRing(list(after.items())), seed=1)


@pytest.mark.parametrize("crowd", [False, True])
def test_a_change_that_keeps_the_largest_weight_sweeps_only_near_the_change(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, crowd: bool
) -> None:
    """Canary-like changes (one member lighter than the rest, joining, leaving, reweighed)
    are mended: the whole ring is never swept again, and the result is the same."""
    if crowd:
        request.getfixturevalue("crowded")
    heavy = {m: 10 for m in POOL[:12]}
    canary = {**heavy, POOL[3]: 1}
    steps = [
        (heavy, canary),  # from equal weights
        (canary, {**canary, POOL[5]: 2}),
        (canary, {**canary, POOL[12]: 10}),
        (canary, {m: w for m, w in canary.items() if m != POOL[7]}),
        (canary, {m: w for m, w in canary.items() if m != POOL[3]}),  # equal weights again
    ]
    bases = [HashRing(list(before.items())) for before, _ in steps]
    scratch = [HashRing(list(after.items())) for _, after in steps]

    def no_whole_sweep(*args: object) -> object:
        raise AssertionError("the whole ring was swept")

    monkeypatch.setattr(hashring, "region_ends", no_whole_sweep)
    for base, expected, (_, after) in zip(bases, scratch, steps, strict=True):
        assert_same(HashRing(list(after.items()), previous=base), expected, seed=3)


def test_a_member_that_joins_takes_a_free_slot_so_slots_never_outgrow_the_membership(
    few_points: None,
) -> None:
    rng = random.Random(7)
    members = {m: 1 for m in POOL[:10]}
    ring: HashRing[str] = HashRing(list(members.items()))
    for _ in range(60):
        if len(members) > 6 and rng.random() < 0.5:
            members.pop(rng.choice(sorted(members)))
        else:
            members[rng.choice(POOL)] = 1
        ring = HashRing(list(members.items()), previous=ring)
        assert len(ring._names) <= 10 + 1
        assert {name for name in ring._names if name is not None} == set(members)


def test_a_change_of_one_member_on_an_equal_weight_ring_is_two_steps() -> None:
    """The merge, then the table: each a few milliseconds with 200 members."""
    members = [(m, 1) for m in POOL[:20]]
    base = HashRing(members)
    for after in (members[1:], [*members, ("10.9.9.9:80", 1)]):
        steps = HashRing.building(after, previous=base)
        next(steps)
        next(steps)
        with pytest.raises(StopIteration):
            next(steps)


def test_a_build_from_scratch_is_many_small_steps_with_the_same_result() -> None:
    members = [(m, 1 + i % 3) for i, m in enumerate(POOL)]
    steps = HashRing.building(members)
    count = 0
    while True:
        try:
            next(steps)
        except StopIteration as done:
            ring = done.value
            break
        count += 1
    # 24 members of 2048 points: a step per member's run, per range of the sort, per
    # slice of the table and of the sweep
    assert count > 3 * len(members)
    assert_same(ring, HashRing(members), seed=2)


def test_invalid_members_raise_at_the_first_step() -> None:
    steps = HashRing.building([("a", 1), ("a", 2)])
    with pytest.raises(ValueError, match="same name"):
        next(steps)


def test_an_edited_ring_keeps_nothing_of_its_predecessors_alive(few_points: None) -> None:
    """Memory stays that of one ring, however many edits."""
    members = {m: 1 + i % 3 for i, m in enumerate(POOL[:16])}
    gc.collect()
    tracemalloc.start()
    try:
        empty = tracemalloc.get_traced_memory()[0]
        ring: HashRing[str] = HashRing(list(members.items()))
        single = tracemalloc.get_traced_memory()[0] - empty
        for i in range(30):
            members[POOL[16 + i % 8]] = 1 + i % 4
            members.pop(POOL[16 + (i + 3) % 8], None)
            ring = HashRing(list(members.items()), previous=ring)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - empty
    finally:
        tracemalloc.stop()
    assert len(ring) > 0
    assert held < 1.5 * single


# --- the edits themselves, on points made by hand ---------------------------------------------


def packed(position: int, slot: int) -> int:
    return (position << SLOT_BITS) | slot


@given(
    spots=st.lists(
        st.tuples(st.integers(0, 15), st.sampled_from("abcde")), min_size=1, max_size=40
    ),
    newcomer=st.sampled_from("abcdef"),
)
def test_merging_a_member_in_or_out_orders_points_at_one_position_by_name(
    spots: list[tuple[int, str]], newcomer: str
) -> None:
    names = sorted({name for _, name in spots} - {newcomer})
    slots = {name: slot for slot, name in enumerate(reversed(names))}  # not name order
    slots[newcomer] = len(names)
    order = [*names, newcomer]

    def ring_of(members: list[str]) -> list[int]:
        chosen = sorted({(p, n) for p, n in spots if n in members}, key=lambda s: (s[0], s[1]))
        return [packed(p << 20, slots[n]) for p, n in chosen]

    before = ringbuild.array("Q", ring_of(names))
    run = ringbuild.array(
        "Q", sorted(packed(p << 20, slots[newcomer]) for p, n in set(spots) if n == newcomer)
    )
    slices = finish(table(before))
    by_slot = [""] * len(order)
    for name, slot in slots.items():
        by_slot[slot] = name
    merged = with_member(before, slices, run, by_slot, newcomer)
    assert merged.tolist() == ring_of(order)
    assert without_member(merged, finish(table(merged)), run, slots[newcomer]) == before


def test_distinct_points_keeps_the_first_of_points_at_one_position() -> None:
    points = ringbuild.array(
        "Q", [packed(5, 2), packed(5, 0), packed(9, 1), packed(9, 3), packed(9, 0), packed(12, 1)]
    )
    kept, kept_table = finish(distinct_points(points, finish(table(points))))
    assert kept.tolist() == [packed(5, 2), packed(9, 1), packed(12, 1)]
    assert kept_table == finish(table(kept))
    assert kept.tolist() == weighted_regions(points, [3, 3, 3, 3])
