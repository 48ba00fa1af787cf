"""Building a hash ring's points in bounded steps, from scratch or from the previous ring.

Job: the sorted points of a ring (``hashring.HashRing``) and the table of where each slice of
the ring starts in them; and the edits that turn a ring's points into those of a ring with
one member more or less, at the cost of that member's points rather than of the whole ring.

A point is one integer: its 32-bit position above its member's 20-bit slot, an index into
the ring's members. Slots are not part of the ring's meaning: points at one position are
ordered by their members' names, whatever their slots, so a ring edited from its
predecessor holds the same (position, member) sequence as one built from scratch, and
every lookup, which compares positions only (a key's slot bits are 0), answers the same.

Invariants:

* Every function here is pure and reads no clock; the arrays it is handed are never
  modified. The generators (``Steps``) do a bounded amount of work between two yields,
  about a millisecond or two on a small machine (a slice of the sort or of the table, or
  one member's edit, never work in proportion to the whole ring), so a caller can spread
  a build over many turns of an event loop; ``finish`` runs one to its end.
* A slice table for ``n`` values has ``2**b + 1`` entries with ``b`` a function of ``n``
  alone, however it was reached (refined, halved or moved by an edit).
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left
from collections.abc import Generator, Sequence
from functools import lru_cache
from hashlib import shake_256
from itertools import repeat
from operator import and_, mul, rshift, sub
from typing import Any, TypeVar

T = TypeVar("T")
Steps = Generator[None, None, T]
# A step function over a table's entries: the entries where it steps (sorted) and its value
# from each of them on; 0 before the first.
StepFunction = tuple[Sequence[int], Sequence[int]]

SLOT_BITS = 20  # up to 1,048,576 members
SLOT = (1 << SLOT_BITS) - 1
SPAN = 1 << 32  # positions are 32 bits
PACKED_BITS = 32 + SLOT_BITS
POSITION = (SPAN - 1) << SLOT_BITS  # a packed value's position bits
# The bits of the double 2**52: ORed with a packed value v they make the double 2**52 + v,
# whose order is v's and whose low 52 bits are v again.
_AS_DOUBLE = 0x4330000000000000
_LOW_NIBBLE = bytes(byte & 0x0F for byte in range(256))
_POINTS_PER_SLICE = 2
# Work per step, each about a millisecond or two: points sorted, table entries found.
_SORT_STEP = 4096
_TABLE_STEP = 4096


def finish(steps: Steps[T]) -> T:
    """Run ``steps`` to the end and return what it builds."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


def encode(text: str) -> bytes:
    """``text`` as UTF-8, where surrogates are kept."""
    try:
        return text.encode()
    except UnicodeEncodeError:  # header values decoded with surrogateescape must still hash
        return text.encode("utf-8", "surrogatepass")


def member_points(text: str, count: int, slot: int) -> array[int]:
    """The first ``count`` points of the member named ``text``, packed with ``slot``.

    One SHAKE-256 stream per member, read as little-endian 64-bit words whose top 32 bits
    are the positions: asking for more points extends the sequence and never changes the
    ones before, which is what confines a scaled ring's churn to the tail.
    """
    return _words(_packed(text, count, slot).to_bytes(8 * count, "little"), "Q")


def member_run(text: str, count: int, slot: int) -> array[int]:
    """``member_points``, sorted."""
    doubles = _packed(text, count, slot, _AS_DOUBLE).to_bytes(8 * count, "little")
    return _words(_as_points(sorted(_words(doubles, "d"))), "Q")


def _packed(text: str, count: int, slot: int, flags: int = 0) -> int:
    """A member's points as one integer of ``count`` 64-bit words, each ORed with ``flags``:
    shifting all the stream's words at once moves each one's top 32 bits into place, the
    mask clears what slid in from the next word, and the slot fills the rest."""
    ones, positions = _fields(count)
    words = int.from_bytes(shake_256(encode(text)).digest(8 * count), "little")
    return ((words >> (64 - PACKED_BITS)) & positions) | ((slot | flags) * ones)


def _words(data: bytes | bytearray, typecode: str) -> array[Any]:
    """Little-endian words as an array of ``typecode``."""
    words = array(typecode, data)
    if sys.byteorder != "little":
        words.byteswap()
    return words


def little(values: array[Any]) -> bytes:
    if sys.byteorder == "little":
        return values.tobytes()
    swapped = array(values.typecode, values)
    swapped.byteswap()
    return swapped.tobytes()


@lru_cache(maxsize=8)
def _fields(count: int) -> tuple[int, int]:
    """1 in each of ``count`` 64-bit words, and the position mask in each, as integers."""
    ones = int.from_bytes(b"\x01\x00\x00\x00\x00\x00\x00\x00" * count, "little")
    return ones, POSITION * ones


def _as_points(floats: list[float]) -> bytearray:
    """Doubles 2**52 + point as the points' little-endian bytes."""
    doubles = array("d", floats)
    if sys.byteorder != "little":
        doubles.byteswap()
    raw = bytearray(doubles.tobytes())
    # clear each word's top 12 bits (the exponent)
    raw[7::8] = bytes(len(doubles))
    raw[6::8] = raw[6::8].translate(_LOW_NIBBLE)
    return raw


def sorted_points(names: Sequence[str], count: int) -> Steps[array[int]]:
    """Every member's points, the member at index ``i`` of ``names`` in slot ``i``, sorted.

    As doubles 2**52 + point: they compare faster than integers and arrive from bytes
    without a conversion per point. The ring is cut into ranges of positions, each member's
    sorted run split between them, and each range sorted on its own: a step sorts one, and
    its reads stay close in memory.
    """
    cut_bits = max(0, len(names) * count // _SORT_STEP).bit_length()
    cuts = [float((1 << 52) + (r << (PACKED_BITS - cut_bits))) for r in range(1, 1 << cut_bits)]
    ranges: list[list[float]] = [[] for _ in range(1 << cut_bits)]
    for slot, text in enumerate(names):
        doubles = _packed(text, count, slot, _AS_DOUBLE).to_bytes(8 * count, "little")
        run = sorted(_words(doubles, "d"))
        start = 0
        for part, cut in zip(ranges, cuts, strict=False):
            end = bisect_left(run, cut, start)
            part += run[start:end]
            start = end
        ranges[-1] += run[start:]
        yield
    raw = bytearray()
    for i, part in enumerate(ranges):
        part.sort()
        raw += _as_points(part)
        ranges[i] = []
        yield
    return _words(raw, "Q")


# --- editing the points ---------------------------------------------------------------------


def first_at(points: array[int], table: Table, keys: list[int]) -> list[int]:
    """For each packed position in ``keys``, the index of the first point at or after it."""
    starts, shift = table
    cuts = list(map(rshift, keys, repeat(shift)))
    ends = map(starts.__getitem__, map((1).__add__, cuts))
    return list(map(bisect_left, repeat(points), keys, map(starts.__getitem__, cuts), ends))


def with_member(
    points: array[int], table: Table, run: array[int], names: Sequence[str], name: str
) -> array[int]:
    """``points`` with the sorted ``run`` of the member ``name`` merged in; a point at the
    position of others goes among them in name order (``names`` by slot)."""
    keys = list(map(and_, run, repeat(POSITION)))
    old, new = memoryview(points), memoryview(run)
    size = len(points)
    pieces = []
    done = 0
    for j, i in enumerate(first_at(points, table, keys)):
        key = keys[j]
        while i < size and points[i] & POSITION == key and names[points[i] & SLOT] < name:
            i += 1
        pieces += (old[done:i], new[j : j + 1])
        done = i
    pieces.append(old[done:])
    merged = array("Q")
    merged.frombytes(b"".join(pieces))
    return merged


def _member_indices(points: array[int], table: Table, run: array[int], slot: int) -> list[int]:
    """Where the points of ``run`` (sorted, packed with ``slot``) are in ``points``."""
    keys = list(map(and_, run, repeat(POSITION)))
    found = []
    last = -1
    for i in first_at(points, table, keys):
        if i <= last:  # past a point of this member at the same position
            i = last + 1
        while points[i] & SLOT != slot:
            i += 1
        found.append(i)
        last = i
    return found


def without_member(points: array[int], table: Table, run: array[int], slot: int) -> array[int]:
    """``points`` without those of the member in ``slot``, whose sorted points are ``run``."""
    old = memoryview(points)
    pieces = []
    done = 0
    for i in _member_indices(points, table, run, slot):
        pieces.append(old[done:i])
        done = i + 1
    pieces.append(old[done:])
    kept = array("Q")
    kept.frombytes(b"".join(pieces))
    return kept


# --- the slice table ------------------------------------------------------------------------

Table = tuple["array[int]", int]
"""Where each of ``2**b`` equal slices of the ring starts in a sorted array (about two values
per slice, one more entry for the end), and the shift that takes a packed value to its
slice."""


def _table_bits(size: int) -> int:
    return max(1, size // _POINTS_PER_SLICE).bit_length() - 1


def table(values: array[int], near: Table | None = None) -> Steps[Table]:
    """The slice table of ``values``, refined from ``near`` (one with as many values, for
    fewer or as many slices) or, without it, from a table of one slice.

    Each doubling finds the middle of every slice by a search inside it; halving keeps
    every other entry.
    """
    code = "I" if len(values) < 1 << 32 else "Q"
    bits = _table_bits(len(values))
    if near is None:
        near = array(code, [0, len(values)]), PACKED_BITS
    starts, shift = near
    have = PACKED_BITS - shift
    if have > bits:
        return starts[:: 1 << (have - bits)], PACKED_BITS - bits
    for level in range(have, bits):
        shift = PACKED_BITS - level - 1
        middles = array(code)
        for low in range(0, 1 << level, _TABLE_STEP):
            high = min(low + _TABLE_STEP, 1 << level)
            at = range((2 * low + 1) << shift, (2 * high) << shift, 2 << shift)
            middles += array(
                code,
                map(bisect_left, repeat(values), at, starts[low:high], starts[low + 1 : high + 1]),
            )
            yield
        starts = _interleaved(starts, middles)
        yield
    return starts, PACKED_BITS - bits


def _interleaved(evens: array[int], odds: array[int]) -> array[int]:
    """``evens[0], odds[0], evens[1], ...``: byte by byte of each entry, all entries at once."""
    size = evens.itemsize
    raw = bytearray(size * (len(evens) + len(odds)))
    for at, values in ((0, evens.tobytes()), (size, odds.tobytes())):
        for byte in range(size):
            raw[at + byte :: 2 * size] = values[byte::size]
    return array(evens.typecode, raw)


def shifted_table(old: Table, run: array[int], sign: int) -> Table:
    """``old`` once the sorted ``run`` is merged in (``sign`` 1) or taken out (-1): every
    entry past a point of the run moves by one."""
    starts, shift = old
    steps = [cut + 1 for cut in map(rshift, run, repeat(shift))], range(1, len(run) + 1)
    return (moved(starts, steps, None) if sign > 0 else moved(starts, None, steps)), shift


def moved(starts: array[int], up: StepFunction | None, down: StepFunction | None) -> array[int]:
    """``starts`` with each entry raised by the step function ``up`` and lowered by ``down``.

    The step functions are laid out as integers of words and added to the table read as one
    integer: no entry ends up out of range, so no carry or borrow crosses a word.
    """
    size = starts.itemsize
    total = int.from_bytes(little(starts), "little")
    for sign, steps in ((1, up), (-1, down)):
        if steps is None or not steps[0]:
            continue
        entries, values = steps
        edges = [0, *entries, len(starts)]
        words = map(int.to_bytes, [0, *values], repeat(size), repeat("little"))
        total += sign * int.from_bytes(
            b"".join(map(mul, words, map(sub, edges[1:], edges))), "little"
        )
    return _words(total.to_bytes(size * len(starts), "little"), starts.typecode)
