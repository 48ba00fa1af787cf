"""A consistent hash ring for the ``ring_hash`` policy: points per endpoint, weights scale distance.

Job: map a request's hash key to a member so that the mapping survives membership changes
with the least churn possible, and, when the member a key maps to may not be used right now,
find the member that would own the key if the unusable ones were gone.

Construction. Every member owns the same number of points, ``points_per_endpoint`` (2048 with
the default options), whatever its weight: the first points of an endless sequence that
depends on its name alone (SHAKE-256 of the name). A key's position is the first 32 bits of
its BLAKE2s; the key belongs to the member whose point ahead of it, clockwise, is nearest
*relative to that member's weight*: the smallest ``distance / weight``. With equal weights
that is the next point clockwise, as in every ketama-style ring. A member's distance to a
random position is close to exponential, so the smallest ``distance / weight`` falls to a
member with probability ``weight / total weight`` (the "linear method" of weighted
distributed hash tables): weight costs no points.

Invariants:

* A member's points depend only on its name and ``points_per_endpoint``, and which of two
  members owns a key depends only on those two. So, while ``points_per_endpoint`` stays the
  same, adding a member moves keys only to it, removing one moves only its keys, and a weight
  change moves keys only to or from that member: no key moves between two members that both
  stayed.
* ``points_per_endpoint`` is ``POINTS_PER_ENDPOINT`` unless the options force otherwise: raised
  to ``ceil(min_ring_size / members)`` when the ring would be smaller than ``min_ring_size``
  (never with the default 1024), cut to ``max_ring_size // members`` (at least 1) when it
  would be larger than ``max_ring_size`` (beyond 4096 members with the defaults). There the
  count follows the membership, and points are only ever added or removed at the tail of each
  member's sequence, so a change also moves the keys of the points that appeared or went.
* The ring depends only on the set of (name, weight) pairs and the options: the same members
  in any order, built from scratch or from any previous ring, hold the same points in the
  same order and answer every lookup the same, in any process and version (no salted
  ``hash()``). Points at one position are ordered by their members' names.
* ``pick`` returns the member that the key would map to if every ineligible member were
  removed (with equal weights: the next distinct eligible member clockwise), asks
  ``eligible`` at most once per distinct member, and ends after one lap of the ring.

Layout (built in ``ringbuild``). A point is one integer: its 32-bit position above its
member's 20-bit slot, the member's index here; keys compare by position only. The points
live in one ``array('Q')`` (8 bytes a point) with a table of where each of ``2**b`` equal
slices of the ring starts (about two points a slice), so a lookup searches one or two
points. With unequal weights the ring also keeps where ownership changes
(``region_ends``), so a lookup is still one search; the ``distance / weight`` scan is left
to the fallback.

Rebuilding. Given the ring it replaces (``previous``) a ring is made by editing it: a member
that left takes out its own points (regenerated from its name), a member that joined merges
its in, and the slice table moves by the count of points below each slice; the cost is that
of the changed members' points, not of the ring. A member keeps its slot while it stays and
one that joins takes the first free slot, so on a weighted ring the ownership regions away
from the changed members' points stay valid and only those near them are swept again
(``ringregions``). A ring built from scratch sorts all its points, and a weighted one whose
largest weight changed sweeps them all; every build works in bounded steps
(``HashRing.building``) that a caller may spread out.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from hashlib import blake2s
from itertools import repeat
from operator import and_
from struct import Struct
from typing import Generic, TypeVar

from resilience.ringbuild import (
    POSITION,
    SLOT,
    SLOT_BITS,
    SPAN,
    Steps,
    Table,
    encode,
    finish,
    member_points,
    member_run,
    shifted_table,
    sorted_points,
    table,
    with_member,
    without_member,
)
from resilience.ringregions import distinct_points, mended_regions, region_ends

K = TypeVar("K", bound=Hashable)

POINTS_PER_ENDPOINT = 2048
"""Points each member owns with the default options: enough that, with equal weights, each
of 3 to 50 members holds its share of the key space within 6.6 % (1024 reached 10.2 %; see
docs/resilience.md), few enough that a ring of 200 members is edited for a change of one in
a few milliseconds."""

# Beyond this share of the members changing at once, building from scratch costs less.
_EDIT_SHARE = 4
# The first 32 bits of a digest. BLAKE2s's default 32-byte digest read this way costs a
# quarter less than asking for a 4-byte digest (keyword arguments are slow to parse).
_FIRST_WORD = Struct(">I").unpack_from


@dataclass(frozen=True, slots=True)
class RingOptions:
    """Ring sizing, named and defaulted like Envoy's ``RingHashLbConfig``."""

    min_ring_size: int = 1024
    max_ring_size: int = 8_388_608

    def __post_init__(self) -> None:
        if not 1 <= self.min_ring_size <= self.max_ring_size:
            raise ValueError(
                "ring sizes must satisfy 1 <= min_ring_size <= max_ring_size, got "
                f"{self.min_ring_size} and {self.max_ring_size}"
            )


def node_name(key: Hashable) -> str:
    """The text a member is hashed by: a ``str`` itself, else its ``id`` text, else ``str()``.

    ``Endpoint.id`` (``host:port``) is what makes a ring stable across snapshots whose
    endpoints differ only in tags or metadata.
    """
    if isinstance(key, str):
        return key
    ident = getattr(key, "id", None)
    if isinstance(ident, str):
        return ident
    return str(key)


def key_position(text: str) -> int:
    """Where the hash key ``text`` sits on the ring: the first 32 bits of its BLAKE2s."""
    return _FIRST_WORD(blake2s(encode(text)).digest())[0]


def points_per_endpoint(members: int, options: RingOptions) -> int:
    """Points each of ``members`` members owns under ``options``; 0 without members."""
    if members <= 0:
        return 0
    per = POINTS_PER_ENDPOINT
    if per * members < options.min_ring_size:
        per = -(-options.min_ring_size // members)  # ceiling division
    if per * members > options.max_ring_size:
        per = max(1, options.max_ring_size // members)
    return per


class HashRing(Generic[K]):
    """An immutable ring over ``(member, weight)`` pairs; rebuild it when membership changes."""

    __slots__ = (
        "_count",
        "_lookup",
        "_members",
        "_names",
        "_point_shift",
        "_point_starts",
        "_points",
        "_weights",
        "_widest",
        "points_per_endpoint",
    )

    def __init__(
        self,
        members: Sequence[tuple[K, int]],
        options: RingOptions | None = None,
        *,
        name: Callable[[K], str] = node_name,
        previous: HashRing[K] | None = None,
    ) -> None:
        """The ring of ``members``; from ``previous`` (built with the same ``name``) when
        given, which gives the same ring for less work when few members changed."""
        finish(self._build(members, options or RingOptions(), name, previous))

    @classmethod
    def building(
        cls,
        members: Sequence[tuple[K, int]],
        options: RingOptions | None = None,
        *,
        name: Callable[[K], str] = node_name,
        previous: HashRing[K] | None = None,
    ) -> Steps[HashRing[K]]:
        """The same ring as ``HashRing(...)``, built in bounded steps: each ``next`` does a
        millisecond or two of work, and the ring is the generator's return value. Invalid
        members raise at the first step."""
        ring = cls.__new__(cls)
        yield from ring._build(members, options or RingOptions(), name, previous)
        return ring

    def _build(
        self,
        members: Sequence[tuple[K, int]],
        options: RingOptions,
        name: Callable[[K], str],
        previous: HashRing[K] | None,
    ) -> Steps[None]:
        named: dict[str, tuple[K, int]] = {}
        for member, weight in members:
            if weight < 1:
                raise ValueError(f"weight must be >= 1, got {weight} for {member!r}")
            text = name(member)
            if text in named:
                raise ValueError(f"two members hash by the same name {text!r}")
            named[text] = (member, weight)
        if len(named) > SLOT + 1:
            raise ValueError(f"a ring holds at most {SLOT + 1} members, got {len(named)}")
        per = points_per_endpoint(len(named), options)
        self.points_per_endpoint = per
        self._count = len(named)
        base = previous
        if base is not None and (base.points_per_endpoint != per or not base._count):
            base = None  # every point changes, or there are none to keep
        if base is not None:
            gone = [text for text in base._names if text is not None and text not in named]
            joined = sorted(set(named).difference(base._names))
            if _EDIT_SHARE * (len(gone) + len(joined)) > max(len(named), base._count):
                base = None
        marks: list[int] = []  # where points came, went or changed weight
        names: list[str | None]
        if base is None:
            order = sorted(named)  # from scratch, slots in name order
            self._points = yield from sorted_points(order, per)
            self._point_starts, self._point_shift = yield from table(self._points)
            names = list(order)
        else:
            names = yield from self._edit(base, gone, joined, marks)
        self._names: tuple[str | None, ...] = tuple(names)
        # A free slot holds None and weighs 0; no point refers to it.
        self._members: tuple[K, ...] = tuple(
            named[text][0] if text is not None else None  # type: ignore[misc]
            for text in names
        )
        self._weights = tuple(named[text][1] if text is not None else 0 for text in names)
        weights = {weight for _, weight in named.values()}
        # 0 when all weights are equal: then the nearest point wins and no bids are compared.
        self._widest = max(weights) if len(weights) > 1 else 0
        if not self._widest:  # every point owns the keys up to it
            self._lookup = (self._points, self._point_starts, self._point_shift, self._members)
            return
        ends = None
        if base is not None and self._widest == max(base._weights):
            for slot, text in enumerate(base._names):
                if text in named and base._weights[slot] != self._weights[slot]:
                    marks += member_points(text, per, 0)
            ends = yield from self._mended(base, sorted(map(and_, marks, repeat(POSITION))))
        if ends is None:
            regions = yield from region_ends(self._points, self._weights)
            ends = regions, (yield from table(regions))
        self._lookup = (ends[0], *ends[1], self._members)

    def _mended(
        self, base: HashRing[K], marks: list[int]
    ) -> Steps[tuple[array[int], Table] | None]:
        """This ring's region ends and their table, mended from ``base``'s where ``marks``
        (sorted packed positions) say points came, went or changed weight; None when a
        whole sweep costs about as much."""
        if base._widest:
            regions, starts, shift, _ = base._lookup
            before = regions, (starts, shift)
        else:  # with equal weights every point ends a region, but one at another's position
            before = yield from distinct_points(
                base._points, (base._point_starts, base._point_shift)
            )
        if not marks:
            return before
        slices = self._point_starts, self._point_shift
        return (yield from mended_regions(*before, self._points, slices, self._weights, marks))

    def _edit(
        self, base: HashRing[K], gone: list[str], joined: list[str], marks: list[int]
    ) -> Steps[list[str | None]]:
        """Set this ring's points and slice table to ``base``'s without the members ``gone``
        and with those ``joined``, each of whose points is added to ``marks``; the names by
        slot. A member that joins takes the first free slot: the others keep theirs."""
        per = self.points_per_endpoint
        names = list(base._names)
        points = base._points
        slices = base._point_starts, base._point_shift
        for text in gone:
            slot = names.index(text)
            run = member_run(text, per, slot)
            points = without_member(points, slices, run, slot)
            yield
            slices = shifted_table(slices, run, -1)
            names[slot] = None
            marks += run
            yield
        for text in joined:
            slot = names.index(None) if None in names else len(names)
            run = member_run(text, per, slot)
            points = with_member(points, slices, run, names, text)
            yield
            slices = shifted_table(slices, run, 1)
            names[slot : slot + 1] = [text]
            marks += run
            yield
        while names and names[-1] is None:
            names.pop()
        self._points = points
        self._point_starts, self._point_shift = yield from table(points, slices)
        return names

    def __len__(self) -> int:
        """Number of points on the ring."""
        return len(self._points)

    def positions(self) -> list[tuple[int, K]]:
        """Every point as ``(32-bit position, member)`` in ring order, for inspection."""
        members = self._members
        return [(p >> SLOT_BITS, members[p & SLOT]) for p in self._points]

    def shares(self) -> dict[K, float]:
        """Each member's exact share of the key space: the fraction of positions it owns."""
        owners, _, _, members = self._lookup
        if not owners:
            return {}
        owned = [0] * len(members)
        previous = (owners[-1] >> SLOT_BITS) - SPAN
        for value in owners:
            position = value >> SLOT_BITS
            owned[value & SLOT] += position - previous
            previous = position
        return {
            members[slot]: share / SPAN
            for slot, share in enumerate(owned)
            if self._names[slot] is not None
        }

    def primary(self, hash_key: str) -> K | None:
        """The member ``hash_key`` maps to, ignoring eligibility; None only for an empty ring."""
        owners, starts, shift, members = self._lookup
        if not members:
            return None
        key = key_position(hash_key) << SLOT_BITS
        i = bisect_left(owners, key, starts[key >> shift], starts[(key >> shift) + 1])
        return members[owners[0 if i == len(owners) else i] & SLOT]

    def pick(self, hash_key: str, eligible: Callable[[K], bool]) -> K | None:
        """The primary member if eligible, else the one the key would map to without the
        ineligible members (with equal weights: the next distinct eligible one clockwise)."""
        # primary() and key_position() inlined, with one attribute read: this runs for every
        # request, and a function call costs a tenth of it.
        owners, starts, shift, members = self._lookup
        if not members:
            return None
        try:
            data = hash_key.encode()
        except UnicodeEncodeError:
            data = hash_key.encode("utf-8", "surrogatepass")
        key = _FIRST_WORD(blake2s(data).digest())[0] << SLOT_BITS
        cut = key >> shift
        i = bisect_left(owners, key, starts[cut], starts[cut + 1])
        if i == len(owners):
            i = 0
        first = owners[i] & SLOT
        if eligible(members[first]):
            return members[first]
        if self._widest:
            found = self._nearest(key, _Verdicts(members, self._count, eligible, first))
        else:  # the owners are the points
            found = self._walk(i, eligible, {first})
        return None if found < 0 else members[found]

    def _point_at(self, key: int) -> int:
        """Index of the first point at or after ``key`` (a packed position), wrapping."""
        points, starts = self._points, self._point_starts
        cut = key >> self._point_shift
        i = bisect_left(points, key, starts[cut], starts[cut + 1])
        return 0 if i == len(points) else i

    def _walk(self, start: int, eligible: Callable[[K], bool], refused: set[int]) -> int:
        """Slot of the next distinct eligible member clockwise from ``start``, or -1."""
        points, members = self._points, self._members
        size = len(points)
        i = start
        for _ in range(size - 1):
            if len(refused) == self._count:
                return -1
            i += 1
            if i == size:
                i = 0
            slot = points[i] & SLOT
            if slot in refused:
                continue
            if eligible(members[slot]):
                return slot
            refused.add(slot)
        return -1

    def _nearest(self, key: int, usable: _Verdicts[K]) -> int:
        """Slot of the ``usable`` member with the smallest ``distance / weight`` from ``key``
        (a packed position), or -1 when none is usable.

        Points are visited clockwise, so distances only grow: once a point is so far that
        even the heaviest weight cannot bring it under the best bid found, no later point can
        beat it and the scan stops. A member is asked about only when it would win.
        """
        points, weights, widest = self._points, self._weights, self._widest
        size = len(points)
        at = key >> SLOT_BITS
        best, best_distance, best_weight = -1, 0, 1
        i = self._point_at(key)
        for _ in range(size):
            point = points[i]
            distance = ((point >> SLOT_BITS) - at) % SPAN
            if best >= 0 and distance * best_weight >= best_distance * widest:
                break
            slot = point & SLOT
            weight = weights[slot]
            if best < 0 or distance * best_weight < best_distance * weight:
                if usable(slot):
                    best, best_distance, best_weight = slot, distance, weight
                elif best < 0 and usable.exhausted:
                    return -1
            i += 1
            if i == size:
                i = 0
        return best


class _Verdicts(Generic[K]):
    """``eligible`` by slot, asked at most once per member within one pick."""

    __slots__ = ("_count", "_eligible", "_members", "_refused", "_usable")

    def __init__(
        self, members: tuple[K, ...], count: int, eligible: Callable[[K], bool], refused: int
    ) -> None:
        self._members = members
        self._count = count
        self._eligible = eligible
        self._usable: set[int] = set()
        self._refused = {refused}

    def __call__(self, slot: int) -> bool:
        if slot in self._usable:
            return True
        if slot in self._refused:
            return False
        if self._eligible(self._members[slot]):
            self._usable.add(slot)
            return True
        self._refused.add(slot)
        return False

    @property
    def exhausted(self) -> bool:
        """Every member has been refused."""
        return len(self._refused) == self._count
