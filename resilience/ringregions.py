"""Who owns which keys on a weighted ring: region ends, swept whole or mended where members changed.

Job: on a ring whose members' weights differ, the sorted ends of the stretches of keys each
member owns (a key belongs to the point with the smallest ``distance / weight`` ahead of
it), so that a lookup stays one search; and, when a few members joined, left or changed
weight, the same ends recomputed only where they can have changed.

Locality. A point of the largest weight ``W`` beats every point beyond it for every key
behind it (it is nearer and no lighter), so the owner of a key depends only on the points
from the key up to the first point of weight ``W``. The ring falls into *segments*, each
ending at a point of weight ``W``; a segment's keys depend on its own points alone, and the
last segment's keys past the top of the ring also on the first segment's points. A change
that keeps ``W`` alters only the segments holding a point that came, went or changed
weight: those are swept again and spliced in, with the slice table moved by the count of
ends that came or went below each slice. Where ``W`` changes, or the segments to redo hold
more than half of the points (one heavy member among light ones makes long segments), the
whole ring is swept.

Invariants: ``points`` are packed and ordered as ``ringbuild`` makes them; ``weights`` are by
slot, 0 for a free slot; slots of members that stayed are the same before and after a
change. The mended ends equal those of a whole sweep, value for value. Every function is
pure; the generators do a bounded amount of work between two yields.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Sequence
from itertools import repeat
from operator import rshift

from resilience.ringbuild import (
    SLOT,
    SLOT_BITS,
    SPAN,
    Steps,
    Table,
    finish,
    first_at,
    little,
    moved,
    shifted_table,
    table,
)

_SWEEP_STEP = 1024  # points swept per step
_WALK_STEP = 8192  # points looked at per step, finding segments
_SEGMENT_COST = 4  # handling a segment costs about as much as sweeping this many points


def weighted_regions(points: Sequence[int], weights: Sequence[int]) -> list[int]:
    """``region_ends`` of the whole ring, run to the end, as a list."""
    return finish(region_ends(points, weights)).tolist()


def region_ends(
    points: Sequence[int], weights: Sequence[int], low: int = 0, high: int | None = None
) -> Steps[array[int]]:
    """Where ownership ends: the owner of a key is the slot packed in the first returned value
    at or after the key's position (wrapping to the first).

    Of the whole ring, or of the keys above the point at ``low - 1`` (from 0 when ``low`` is
    0) up to the point at ``high - 1``, which must then be of the largest weight (up to the
    top of the ring when ``high`` is the end).

    A point at ``q`` of weight ``w`` bids ``(q - x) / w`` for a key at ``x`` behind it; the
    lowest bid wins, the nearer point on a tie, the earlier of two at one position. Sweeping
    from the top down, a stack holds the bids that are lowest somewhere below the sweep,
    lighter (and nearer) on top: a new point discards every bid no heavier than its own,
    then every bid whose stretch it covers. Each stretch's upper end is recorded once the
    sweep has passed it, so the work is linear in the points.
    """
    if high is None:
        high = len(points)
    if not points:
        return array("Q")
    # Entries: position, weight, slot, and the lowest key position the entry wins (below it
    # the entry underneath wins); the bottom entry wins all the way down.
    stack: list[tuple[int, int, int, int]] = []
    wrapped: list[int] = []
    if high == len(points):
        # Keys near the top of the ring may belong to points past the wrap; of those, only
        # the ones heavier than every point before them can win anywhere before the wrap.
        widest = max(weights)
        heaviest = 0
        for point in points:
            if weights[point & SLOT] > heaviest:
                heaviest = weights[point & SLOT]
                wrapped.append(point + (SPAN << SLOT_BITS))
                if heaviest == widest:
                    break
    # The sweep goes down in blocks, the wrapped points first; each block's ends are kept,
    # reversed, for the end.
    blocks: list[bytes] = []
    if wrapped:
        # before the last wrapped point, every stretch lies past the wrap
        ends = _sweep(wrapped[::-1], _below(points, high), len(wrapped) - 1, stack, weights)
        blocks.append(array("Q", reversed(ends)).tobytes())
    top = high
    while top > low:
        yield
        bottom = max(low, top - _SWEEP_STEP)
        ends = _sweep(points[bottom:top][::-1], _below(points, bottom), 0, stack, weights)
        blocks.append(array("Q", reversed(ends)).tobytes())
        top = bottom
    blocks.reverse()
    regions = array("Q")
    regions.frombytes(b"".join(blocks))
    return regions


def _sweep(
    block: Sequence[int],
    below_block: int,
    record_from: int,
    stack: list[tuple[int, int, int, int]],
    weights: Sequence[int],
) -> list[int]:
    """Sweep ``block`` (points, top down) on ``stack``; the ends of the stretches from the
    first point's position down to ``below_block`` (excluded), top down, leaving out those
    of the points before index ``record_from``."""
    positions = [*map(rshift, block, repeat(SLOT_BITS)), below_block]
    ends: list[int] = []
    append = ends.append
    lowest = -(1 << 64)
    for i, point in enumerate(block):
        position, slot = positions[i], point & SLOT
        weight = weights[slot]
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
        stack.append((position, weight, slot, start))
        if i < record_from:
            continue
        # Record the stretches ending in (next position down, this position]: this point's
        # own, then those of the entries below it, each ending where the one above begins.
        below = positions[i + 1]
        if below < position < SPAN:
            append(point)
        k = len(stack) - 2
        end = start - 1
        while k >= 0 and end > below:
            if end < SPAN:
                append((end << SLOT_BITS) | stack[k][2])
            end = stack[k][3] - 1
            k -= 1
    return ends


def _below(points: Sequence[int], low: int) -> int:
    """The position under the sweep's last point: the point before ``low``, or -1."""
    return points[low - 1] >> SLOT_BITS if low else -1


def distinct_points(points: array[int], points_table: Table) -> Steps[tuple[array[int], Table]]:
    """The region ends of a ring whose weights are all equal, and their slice table: its
    points, but of two at one position only the first (the later one owns no key).

    Such ties are rare (about 20 among 400,000 points) and are looked for without a step per
    point: two bytes of position bits of every point, each as one integer XORed with itself
    one byte on, have a zero byte in both where a point may share the next one's position.
    """
    size = len(points)
    raw = little(points)
    differ = 0
    for byte in (3, 4):  # position bits 4 to 19: neighbours all but always differ there
        plane = int.from_bytes(raw[byte::8], "little")
        differ |= plane ^ (plane >> 8)
    flags = differ.to_bytes(size, "little")
    later = []
    at = flags.find(0)
    while 0 <= at < size - 1:
        if points[at] >> SLOT_BITS == points[at + 1] >> SLOT_BITS:
            later.append(at + 1)
        if len(later) % _WALK_STEP == _WALK_STEP - 1:
            yield
        at = flags.find(0, at + 1)
    if not later:
        return points, points_table
    kept = array("Q")
    done = 0
    for i in later:
        kept += points[done:i]
        done = i + 1
    kept += points[done:]
    shifted = shifted_table(points_table, array("Q", map(points.__getitem__, later)), -1)
    return kept, (yield from table(kept, shifted))


def mended_regions(
    regions: array[int],
    regions_table: Table,
    points: array[int],
    points_table: Table,
    weights: Sequence[int],
    marks: list[int],
) -> Steps[tuple[array[int], Table] | None]:
    """The ends and their slice table after a change that kept the largest weight, from
    those before it (``regions``, ``regions_table``), the points after it and the sorted
    packed positions (slot bits 0) of every point that came, went or changed weight.

    None when the segments to sweep again hold more than half of the points: then a whole
    sweep costs about as much.
    """
    segments = yield from _segments(points, points_table, weights, marks)
    if segments is None:
        return None
    pieces: list[memoryview] = []
    old = memoryview(regions)
    done = 0
    # Per swept segment: its first and last key position, where its ends are now, how many
    # there were and are.
    spliced: list[tuple[int, int, int, int, int]] = []
    size = 0
    swept = 0
    for low, high in segments:
        if high == len(points) or high - low > _SWEEP_STEP:
            ends = yield from region_ends(points, weights, low, high)
        else:  # short, and it starts at a point of the largest weight: no wrap, one block
            block = points[low:high][::-1]
            ends = array("Q", reversed(_sweep(block, _below(points, low), 0, [], weights)))
        first = _below(points, low) + 1
        last = points[high - 1] >> SLOT_BITS if high < len(points) else SPAN - 1
        start = _first_at(regions, regions_table, first << SLOT_BITS)
        stop = _first_at(regions, regions_table, (last + 1) << SLOT_BITS)
        pieces += (old[done:start], memoryview(ends))
        size += start - done
        spliced.append((first, last, size, stop - start, len(ends)))
        size += len(ends)
        done = stop
        swept += high - low + _SEGMENT_COST
        if swept >= _SWEEP_STEP:
            swept = 0
            yield
    pieces.append(old[done:])
    mended = array("Q")
    mended.frombytes(b"".join(pieces))
    yield
    starts = yield from _mended_starts(regions_table, mended, spliced)
    return mended, (yield from table(mended, (starts, regions_table[1])))


def _first_at(values: array[int], values_table: Table, key: int) -> int:
    """Index of the first of ``values`` at or after ``key``; their length past the top."""
    starts, shift = values_table
    cut = key >> shift
    if cut >= len(starts) - 1:
        return len(values)
    return bisect_left(values, key, starts[cut], starts[cut + 1])


def _mended_starts(
    old: Table, mended: array[int], spliced: list[tuple[int, int, int, int, int]]
) -> Steps[array[int]]:
    """The slice table of ``mended`` at ``old``'s resolution: an entry outside every swept
    segment moves by the count of ends that came or went below it; one inside is found by
    a search among the segment's new ends."""
    starts, shift = old
    # A slice starts at position (s << shift) >> SLOT_BITS; its entry counts the ends below.
    up: tuple[list[int], list[int]] = ([], [])
    down: tuple[list[int], list[int]] = ([], [])
    came = went = 0
    for _, last, _, before, after in spliced:
        entry = ((last << SLOT_BITS) >> shift) + 1  # the first slice starting past the segment
        if after > before:
            came += after - before
            up[0].append(entry)
            up[1].append(came)
        elif after < before:
            went += before - after
            down[0].append(entry)
            down[1].append(went)
    starts = moved(starts, up, down)
    yield
    found = 0
    for first, last, at, _, after in spliced:
        entry = -(-(first << SLOT_BITS) >> shift)  # the first slice starting in the segment
        end = ((last << SLOT_BITS) >> shift) + 1
        if entry < end:
            slices = range(entry << shift, end << shift, 1 << shift)
            starts[entry:end] = array(
                starts.typecode,
                map(bisect_left, repeat(mended), slices, repeat(at), repeat(at + after)),
            )
            found += end - entry + _SEGMENT_COST
        if found >= _WALK_STEP:
            found = 0
            yield
    return starts


def _segments(
    points: array[int], points_table: Table, weights: Sequence[int], marks: list[int]
) -> Steps[list[tuple[int, int]] | None]:
    """The segments holding a key position of ``marks``, as ``(low, high)`` index ranges of
    their points, sorted and merged where they touch; with the first and the last segment
    whenever either is among them (the last one's keys past the top depend on the first's
    points). None when they hold more than half of the points."""
    widest = max(weights)
    size = len(points)
    budget = size // 2
    found: list[tuple[int, int]] = []
    wraps = False
    walked = 0
    for i in first_at(points, points_table, marks):
        if found and i < found[-1][1]:
            continue  # in the segment found last
        if walked >= _WALK_STEP:
            walked = 0
            yield
        high = i
        while high < size and weights[points[high] & SLOT] != widest:
            high += 1
            if high - i > budget:
                return None
        low = i
        while low > 0 and weights[points[low - 1] & SLOT] != widest:
            low -= 1
            if high - low > budget:
                return None
        budget -= high - low
        walked += high - low + 1
        wraps = wraps or high == size or low == 0
        found.append((low, min(high + 1, size)))
    if wraps:
        first = 0
        while weights[points[first] & SLOT] != widest:
            first += 1
        last = size - 1
        while weights[points[last] & SLOT] != widest:
            last -= 1
        found += ((0, first + 1), (last + 1, size))
        found.sort()
    merged: list[tuple[int, int]] = []
    for low, high in found:
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(high, merged[-1][1]))
        else:
            merged.append((low, high))
    if sum(high - low for low, high in merged) > size // 2:
        return None
    return merged
