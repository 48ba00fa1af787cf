"""A consistent hash ring (ketama style, virtual nodes) for the ``ring_hash`` policy.

Job: map a request's hash key to a member so that the mapping survives membership changes
with little churn, and, when the member a key maps to may not be used right now, walk
clockwise to the next *distinct* member that may.

Invariants:

* The ring depends only on the set of (name, weight) pairs and the ``RingOptions``: the same
  members given in any order build the same ring, in any process (no salted ``hash()``).
* Every member owns ``weight * points_per_weight`` points (at least one), so a member's share
  of keys is proportional to its weight, with a relative spread of about
  ``1 / sqrt(points it owns)``.
* ``points_per_weight`` is a power of two chosen from the total weight: the smallest one that
  makes the ring at least ``min_ring_size`` points, capped so the ring stays within
  ``max_ring_size``. Rounding to a power of two keeps it constant while the total weight
  moves within a doubling band, so adding or removing one member moves only that member's
  keys (Envoy's exact scaling changes every member's points on every change and so moves
  roughly twice as many). Where ``min_ring_size / total weight`` crosses a power of two
  (total weight 7 -> 8 with the default options) every member's points halve or double and
  about half of the keys move. The bands are about ``m / 2**k <= total weight < 2 * m / 2**k`` for
  ``m = min_ring_size``; choose ``m`` so a cluster's usual sizes fall inside one band.
* A walk over ineligible members asks ``eligible`` at most once per distinct member and
  ends after one lap of the ring.

Points are the first 8 bytes of BLAKE2b over ``"<name>-<i>"`` read as a big-endian integer.
Sixty-four-bit points keep collisions negligible even on a multi-million point ring (32-bit
ketama points start colliding at tens of thousands of points), cost one hash call per
point, and come with the standard library. Ketama's MD5 layout is not reproduced because
no foreign client has to agree with this ring. Keys are hashed the same way and belong to
the first point at or after their hash, wrapping at the top.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from hashlib import blake2b
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


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


def hash64(text: str) -> int:
    """Position of ``text`` on the ring: 64 bits of BLAKE2b."""
    try:
        data = text.encode()
    except UnicodeEncodeError:  # header values decoded with surrogateescape must still hash
        data = text.encode("utf-8", "surrogatepass")
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "big")


def points_per_weight(total_weight: int, options: RingOptions) -> int:
    """Points each unit of weight gets; 0 when the total weight exceeds ``max_ring_size``."""
    if total_weight <= 0:
        return 0
    if total_weight > options.max_ring_size:
        return 0
    wanted = -(-options.min_ring_size // total_weight)  # ceiling division
    up = 1 << (wanted - 1).bit_length()
    cap = 1 << ((options.max_ring_size // total_weight).bit_length() - 1)
    return min(up, cap)


class HashRing(Generic[K]):
    """An immutable ring over ``(member, weight)`` pairs; rebuild it when membership changes."""

    __slots__ = ("_distinct", "_owners", "_points", "points_per_weight")

    def __init__(
        self,
        members: Sequence[tuple[K, int]],
        options: RingOptions | None = None,
        *,
        name: Callable[[K], str] = node_name,
    ) -> None:
        options = options or RingOptions()
        total = sum(weight for _, weight in members)
        per_weight = points_per_weight(total, options)
        self.points_per_weight = per_weight
        entries: list[tuple[int, str, int]] = []
        names: set[str] = set()
        for index, (member, weight) in enumerate(members):
            if weight < 1:
                raise ValueError(f"weight must be >= 1, got {weight} for {member!r}")
            text = name(member)
            if text in names:
                raise ValueError(f"two members hash by the same name {text!r}")
            names.add(text)
            if per_weight:
                count = weight * per_weight
            else:  # total weight beyond max_ring_size: scale down, keep every member
                count = max(1, weight * options.max_ring_size // total)
            entries.extend((hash64(f"{text}-{i}"), text, index) for i in range(count))
        # The name breaks (astronomically rare) point ties, so member order never matters.
        entries.sort()
        self._points: list[int] = [point for point, _, _ in entries]
        self._owners: list[K] = [members[index][0] for _, _, index in entries]
        self._distinct = len(members)

    def __len__(self) -> int:
        """Number of points on the ring."""
        return len(self._points)

    def _locate(self, hash_key: str) -> int:
        i = bisect_left(self._points, hash64(hash_key))
        return 0 if i == len(self._points) else i

    def primary(self, hash_key: str) -> K | None:
        """The member ``hash_key`` maps to, ignoring eligibility; None only for an empty ring."""
        if not self._points:
            return None
        return self._owners[self._locate(hash_key)]

    def pick(self, hash_key: str, eligible: Callable[[K], bool]) -> K | None:
        """The primary member if eligible, else the next distinct eligible one clockwise."""
        if not self._points:
            return None
        i = self._locate(hash_key)
        first = self._owners[i]
        if eligible(first):
            return first
        return self._walk(i, first, eligible)

    def _walk(self, start: int, first: K, eligible: Callable[[K], bool]) -> K | None:
        owners = self._owners
        size = len(owners)
        refused = {first}
        if len(refused) == self._distinct:
            return None
        i = start
        for _ in range(size - 1):
            i += 1
            if i == size:
                i = 0
            member = owners[i]
            if member in refused:
                continue
            if eligible(member):
                return member
            refused.add(member)
            if len(refused) == self._distinct:
                return None
        return None
