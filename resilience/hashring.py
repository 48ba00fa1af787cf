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
  in any order build the same ring, in any process and version (no salted ``hash()``).
* ``pick`` returns the member that the key would map to if every ineligible member were
  removed (with equal weights: the next distinct eligible member clockwise), asks
  ``eligible`` at most once per distinct member, and ends after one lap of the ring.

Layout. A point is one integer: its 32-bit position above its member's 20-bit rank in name
order. Sorting those integers orders points at one position by name, so even that tie is
settled the same way in every membership; 52 bits are the mantissa of a double, so points
are sorted as floats (CPython's fast comparison) without a conversion per point. Keys
compare by position only. The points live in one ``array('Q')`` (8 bytes a point) with a
table of where each of ``2**b`` equal slices of the ring starts (about two points a slice),
so a lookup searches one or two points. With unequal weights the ring also keeps where
ownership changes (``weighted_regions``), so a lookup is still one search; the
``distance / weight`` scan is left to the fallback.
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from hashlib import blake2s, shake_256
from itertools import accumulate, repeat
from operator import rshift
from struct import Struct
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)

POINTS_PER_ENDPOINT = 2048
"""Points each member owns with the default options: enough that, with equal weights, each
of 3 to 50 members holds its share of the key space within 6.6 % (1024 reached 10.2 %; see
docs/resilience.md), few enough that 200 members build in about a quarter of a second."""

_RANK_BITS = 20  # up to 1,048,576 members
_RANK = (1 << _RANK_BITS) - 1
_SPAN = 1 << 32  # positions are 32 bits
_PACKED_BITS = 32 + _RANK_BITS
_POSITION = (_SPAN - 1) << _RANK_BITS  # a packed value's position bits
# The bits of the double 2**52: ORed with a packed value v they make the double 2**52 + v,
# whose order is v's and whose low 52 bits are v again.
_AS_DOUBLE = 0x4330000000000000
_LOW_NIBBLE = bytes(byte & 0x0F for byte in range(256))
_POINTS_PER_SLICE = 2
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


def _encode(text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:  # header values decoded with surrogateescape must still hash
        return text.encode("utf-8", "surrogatepass")


def key_position(text: str) -> int:
    """Where the hash key ``text`` sits on the ring: the first 32 bits of its BLAKE2s."""
    return _FIRST_WORD(blake2s(_encode(text)).digest())[0]


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


def member_points(text: str, count: int, rank: int) -> array[int]:
    """The first ``count`` points of the member named ``text``, packed with ``rank``.

    One SHAKE-256 stream per member, read as little-endian 64-bit words whose top 32 bits
    are the positions: asking for more points extends the sequence and never changes the
    ones before, which is what confines a scaled ring's churn to the tail.
    """
    return _words(_packed(text, count, rank).to_bytes(8 * count, "little"), "Q")


def _packed(text: str, count: int, rank: int, flags: int = 0) -> int:
    """A member's points as one integer of ``count`` 64-bit words, each ORed with ``flags``:
    shifting all the stream's words at once moves each one's top 32 bits into place, the
    mask clears what slid in from the next word, and the rank fills the rest."""
    ones, positions = _fields(count)
    words = int.from_bytes(shake_256(_encode(text)).digest(8 * count), "little")
    return ((words >> (64 - _PACKED_BITS)) & positions) | ((rank | flags) * ones)


def _words(data: bytes | bytearray, typecode: str) -> array[Any]:
    """Little-endian 64-bit words as an array of ``typecode``."""
    words = array(typecode, data)
    if sys.byteorder != "little":
        words.byteswap()
    return words


@lru_cache(maxsize=8)
def _fields(count: int) -> tuple[int, int]:
    """1 in each of ``count`` 64-bit words, and the position mask in each, as integers."""
    ones = int.from_bytes(b"\x01\x00\x00\x00\x00\x00\x00\x00" * count, "little")
    return ones, _POSITION * ones


def _sorted_points(order: Sequence[str], count: int) -> array[int]:
    """Every member's points, in ``order`` of rank, sorted into one array."""
    # As doubles 2**52 + point: they compare faster than integers and arrive from bytes
    # without a conversion per point. Sorting each member's points first leaves one merge
    # of runs, whose reads stay close in memory.
    floats: list[float] = []
    for rank, text in enumerate(order):
        double = _packed(text, count, rank, _AS_DOUBLE).to_bytes(8 * count, "little")
        floats.extend(sorted(_words(double, "d")))
    floats.sort()
    doubles = array("d", floats)
    del floats
    if sys.byteorder != "little":
        doubles.byteswap()
    # Back to the points: clear each little-endian word's top 12 bits (the exponent).
    raw = bytearray(doubles.tobytes())
    raw[7::8] = bytes(len(doubles))
    raw[6::8] = raw[6::8].translate(_LOW_NIBBLE)
    return _words(raw, "Q")


def weighted_regions(points: Sequence[int], weights: Sequence[int]) -> list[int]:
    """Where ownership ends on a weighted ring: the owner of a key is the rank packed in the
    first returned value at or after the key's position (wrapping to the first).

    ``points`` are packed and sorted, ``weights`` indexed by rank. A point at ``q`` of weight
    ``w`` bids ``(q - x) / w`` for a key at ``x`` behind it; the lowest bid wins, the nearer
    point on a tie. Sweeping from the top of the ring down, a stack holds the bids that are
    lowest somewhere below the sweep, lighter (and nearer) on top: a new point discards every
    bid no heavier than its own, then every bid whose stretch it covers. Each stretch's upper
    end is recorded once the sweep has passed it, so the work is linear in the points.
    """
    if not points:
        return []
    widest = max(weights)
    # Entries: position, weight, rank, and the lowest key position the entry wins (below it
    # the entry underneath wins); the bottom entry wins all the way down.
    stack: list[tuple[int, int, int, int]] = []
    lowest = -(1 << 64)
    ends: list[int] = []
    # Keys near the top of the ring may belong to points past the wrap; of those, only the
    # ones heavier than every point before them can win anywhere before the wrap.
    wrapped: list[int] = []
    heaviest = 0
    for point in points:
        if weights[point & _RANK] > heaviest:
            heaviest = weights[point & _RANK]
            wrapped.append(point + (_SPAN << _RANK_BITS))
            if heaviest == widest:
                break
    sweep = [*reversed(wrapped), *reversed(points)]
    positions = [*map(rshift, sweep, repeat(_RANK_BITS)), -1]
    record_from = len(wrapped) - 1  # before that, every stretch lies past the wrap
    append = ends.append
    for i, point in enumerate(sweep):
        position, rank = positions[i], point & _RANK
        weight = weights[rank]
        while stack and stack[-1][1] <= weight:
            stack.pop()
        start = lowest
        while stack:
            top_position, top_weight, _, top_start = stack[-1]
            # this point wins at x >= ceil((position * tw - tp * weight) / (tw - weight))
            start = -((top_position * weight - position * top_weight) // (top_weight - weight))
            if start > top_start:
                break
            stack.pop()
            start = lowest
        stack.append((position, weight, rank, start))
        if i < record_from:
            continue
        # Record the stretches ending in (next position down, this position]: this point's
        # own, then those of the entries below it, each ending where the one above begins.
        below = positions[i + 1]
        if below < position < _SPAN:
            append(point)
        k = len(stack) - 2
        end = start - 1
        while k >= 0 and end > below:
            if end < _SPAN:
                append((end << _RANK_BITS) | stack[k][2])
            end = stack[k][3] - 1
            k -= 1
    ends.reverse()
    return ends


def _slices(values: array[int]) -> tuple[array[int], int]:
    """Where each of ``2**b`` equal slices of the ring starts in ``values`` (about two values
    per slice), and the shift that takes a packed position to its slice."""
    bits = max(1, len(values) // _POINTS_PER_SLICE).bit_length() - 1
    shift = _PACKED_BITS - bits
    per_slice = Counter(map(rshift, values, repeat(shift)))
    starts = [0, *accumulate(map(per_slice.get, range(1 << bits), repeat(0)))]
    return array("I" if len(values) < 1 << 32 else "Q", starts), shift


class HashRing(Generic[K]):
    """An immutable ring over ``(member, weight)`` pairs; rebuild it when membership changes."""

    __slots__ = (
        "_lookup",
        "_members",
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
    ) -> None:
        named: dict[str, tuple[K, int]] = {}
        for member, weight in members:
            if weight < 1:
                raise ValueError(f"weight must be >= 1, got {weight} for {member!r}")
            text = name(member)
            if text in named:
                raise ValueError(f"two members hash by the same name {text!r}")
            named[text] = (member, weight)
        if len(named) > _RANK + 1:
            raise ValueError(f"a ring holds at most {_RANK + 1} members, got {len(named)}")
        order = sorted(named)  # a member's rank is its place in name order
        self._members: tuple[K, ...] = tuple(named[text][0] for text in order)
        self._weights: tuple[int, ...] = tuple(named[text][1] for text in order)
        # 0 when all weights are equal: then the nearest point wins and no bids are compared.
        self._widest = max(self._weights) if len(set(self._weights)) > 1 else 0
        per = points_per_endpoint(len(order), options or RingOptions())
        self.points_per_endpoint = per
        self._points = _sorted_points(order, per)
        self._point_starts, self._point_shift = _slices(self._points)
        if self._widest:
            regions = array("Q", weighted_regions(self._points, self._weights))
            self._lookup = (regions, *_slices(regions), self._members)
        else:  # every point owns the keys up to it
            self._lookup = (self._points, self._point_starts, self._point_shift, self._members)

    def __len__(self) -> int:
        """Number of points on the ring."""
        return len(self._points)

    def positions(self) -> list[tuple[int, K]]:
        """Every point as ``(32-bit position, member)`` in ring order, for inspection."""
        members = self._members
        return [(p >> _RANK_BITS, members[p & _RANK]) for p in self._points]

    def shares(self) -> dict[K, float]:
        """Each member's exact share of the key space: the fraction of positions it owns."""
        owners, _, _, members = self._lookup
        if not owners:
            return {}
        owned = [0] * len(members)
        previous = (owners[-1] >> _RANK_BITS) - _SPAN
        for value in owners:
            position = value >> _RANK_BITS
            owned[value & _RANK] += position - previous
            previous = position
        return {member: share / _SPAN for member, share in zip(members, owned, strict=True)}

    def primary(self, hash_key: str) -> K | None:
        """The member ``hash_key`` maps to, ignoring eligibility; None only for an empty ring."""
        owners, starts, shift, members = self._lookup
        if not members:
            return None
        key = key_position(hash_key) << _RANK_BITS
        i = bisect_left(owners, key, starts[key >> shift], starts[(key >> shift) + 1])
        return members[owners[0 if i == len(owners) else i] & _RANK]

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
        key = _FIRST_WORD(blake2s(data).digest())[0] << _RANK_BITS
        cut = key >> shift
        i = bisect_left(owners, key, starts[cut], starts[cut + 1])
        if i == len(owners):
            i = 0
        first = owners[i] & _RANK
        if eligible(members[first]):
            return members[first]
        if self._widest:
            found = self._nearest(key, _Verdicts(members, eligible, first))
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
        """Rank of the next distinct eligible member clockwise from ``start``, or -1."""
        points, members = self._points, self._members
        size = len(points)
        i = start
        for _ in range(size - 1):
            if len(refused) == len(members):
                return -1
            i += 1
            if i == size:
                i = 0
            rank = points[i] & _RANK
            if rank in refused:
                continue
            if eligible(members[rank]):
                return rank
            refused.add(rank)
        return -1

    def _nearest(self, key: int, usable: _Verdicts[K]) -> int:
        """Rank of the ``usable`` member with the smallest ``distance / weight`` from ``key``
        (a packed position), or -1 when none is usable.

        Points are visited clockwise, so distances only grow: once a point is so far that
        even the heaviest weight cannot bring it under the best bid found, no later point can
        beat it and the scan stops. A member is asked about only when it would win.
        """
        points, weights, widest = self._points, self._weights, self._widest
        size = len(points)
        at = key >> _RANK_BITS
        best, best_distance, best_weight = -1, 0, 1
        i = self._point_at(key)
        for _ in range(size):
            point = points[i]
            distance = ((point >> _RANK_BITS) - at) % _SPAN
            if best >= 0 and distance * best_weight >= best_distance * widest:
                break
            rank = point & _RANK
            weight = weights[rank]
            if best < 0 or distance * best_weight < best_distance * weight:
                if usable(rank):
                    best, best_distance, best_weight = rank, distance, weight
                elif best < 0 and usable.exhausted:
                    return -1
            i += 1
            if i == size:
                i = 0
        return best


class _Verdicts(Generic[K]):
    """``eligible`` by rank, asked at most once per member within one pick."""

    __slots__ = ("_eligible", "_members", "_refused", "_usable")

    def __init__(self, members: tuple[K, ...], eligible: Callable[[K], bool], refused: int) -> None:
        self._members = members
        self._eligible = eligible
        self._usable: set[int] = set()
        self._refused = {refused}

    def __call__(self, rank: int) -> bool:
        if rank in self._usable:
            return True
        if rank in self._refused:
            return False
        if self._eligible(self._members[rank]):
            self._usable.add(rank)
            return True
        self._refused.add(rank)
        return False

    @property
    def exhausted(self) -> bool:
        """Every member has been refused."""
        return len(self._refused) == len(self._members)
