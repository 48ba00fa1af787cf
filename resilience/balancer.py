"""Load-balancing policies: choose one member of a cluster for a request.

Job: given the members of a cluster (``(key, weight)`` pairs in a stable order) and a
predicate saying which of them may be used right now, return one member, or None.

Invariants:

* ``pick`` returns only members for which ``eligible`` returned True, and returns None (never
  raises) when there are no members or none is eligible.
* ``eligible`` is the caller's whole view of health, ejection, breaker state and members this
  request already tried; a balancer may call it more than once for the same member within
  one pick, so it must be cheap and free of side effects.
* When the first candidate is eligible a pick allocates nothing and does not sort; scans
  and temporary collections happen only on the fallback path.
* Randomness comes only from the injected ``random.Random``; no policy reads a clock.
* A balancer is built for one membership; rebuild it when membership changes. Policy state
  (cursor, smooth weights) does not carry over, which is harmless because each restarts
  from a fair position. The ring of ``ring_hash`` is the exception: built from the previous
  balancer's ring it costs what the change costs, and ``balancer_steps`` builds it in
  bounded steps for a caller that must not wait for all of it at once.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Callable, Hashable, Sequence
from itertools import accumulate
from typing import Generic, Protocol, TypeVar

from resilience.hashring import HashRing, RingOptions
from resilience.ringbuild import Steps, finish

K = TypeVar("K", bound=Hashable)

# Random draws before falling back to a scan of eligible members: enough that a mostly
# healthy cluster never scans, few enough that a mostly ineligible one gives up early.
_RANDOM_TRIES = 4


class Balancer(Protocol[K]):
    name: str

    def pick(self, hash_key: str | None, eligible: Callable[[K], bool]) -> K | None:
        """Return an eligible member, or None when no member is eligible.

        Never raises for an empty or all-ineligible member list.
        """
        ...


class RoundRobin(Generic[K]):
    """Cycles members in order, skipping ineligible ones; weights are ignored.

    The first pick starts at a random member so that many proxies built at the same moment
    from the same membership do not all send their first request to the same member.
    """

    name = "round_robin"
    __slots__ = ("_members", "_next")

    def __init__(self, members: Sequence[K], rng: random.Random) -> None:
        self._members: tuple[K, ...] = tuple(members)
        self._next = rng.randrange(len(self._members)) if self._members else 0

    def pick(self, hash_key: str | None, eligible: Callable[[K], bool]) -> K | None:
        members = self._members
        size = len(members)
        i = self._next
        for _ in range(size):  # at most one lap
            member = members[i]
            i += 1
            if i == size:
                i = 0
            if eligible(member):
                self._next = i
                return member
        return None


class WeightedRandom(Generic[K]):
    """Picks a member with probability proportional to its weight among eligible members.

    Draws over all members and rejects ineligible ones (which keeps the result exactly
    weighted among the eligible), then after a few misses draws from a scan of the eligible.
    """

    name = "random"
    __slots__ = ("_bounds", "_members", "_rng", "_total")

    def __init__(self, members: Sequence[tuple[K, int]], rng: random.Random) -> None:
        self._members: tuple[K, ...] = tuple(member for member, _ in members)
        self._bounds: list[int] = list(accumulate(weight for _, weight in members))
        self._total = self._bounds[-1] if self._bounds else 0
        self._rng = rng

    def pick(self, hash_key: str | None, eligible: Callable[[K], bool]) -> K | None:
        if not self._members:
            return None
        members, bounds, total, rng = self._members, self._bounds, self._total, self._rng
        for _ in range(_RANDOM_TRIES):
            member = members[bisect_right(bounds, rng.random() * total)]
            if eligible(member):
                return member
        return self._pick_from_scan(eligible)

    def _pick_from_scan(self, eligible: Callable[[K], bool]) -> K | None:
        chosen: list[K] = []
        weights: list[int] = []
        previous = 0
        for member, bound in zip(self._members, self._bounds, strict=True):
            if eligible(member):
                chosen.append(member)
                weights.append(bound - previous)
            previous = bound
        if not chosen:
            return None
        return self._rng.choices(chosen, weights)[0]


class SmoothWeightedRoundRobin(Generic[K]):
    """nginx's smooth weighted round robin.

    Each pick adds every eligible member's weight to its current value, chooses the largest
    current value (the earliest member on ties) and subtracts from it the total weight of the
    members that took part. Ineligible members sit the round out with their current value
    unchanged, so they neither bank credit while unusable nor lose their place. Weights 5, 1,
    1 give ``a a b a c a a`` per cycle. Cost is one pass over the members per pick.
    """

    name = "weighted_round_robin"
    __slots__ = ("_current", "_members", "_weights")

    def __init__(self, members: Sequence[tuple[K, int]]) -> None:
        self._members: tuple[K, ...] = tuple(member for member, _ in members)
        self._weights: tuple[int, ...] = tuple(weight for _, weight in members)
        self._current: list[int] = [0] * len(self._members)

    def pick(self, hash_key: str | None, eligible: Callable[[K], bool]) -> K | None:
        current, weights = self._current, self._weights
        best = -1
        total = 0
        for i, member in enumerate(self._members):
            if not eligible(member):
                continue
            current[i] += weights[i]
            total += weights[i]
            if best < 0 or current[i] > current[best]:
                best = i
        if best < 0:
            return None
        current[best] -= total
        return self._members[best]


class LeastRequest(Generic[K]):
    """Power of two choices over in-flight requests, read through ``load``.

    Draws two distinct eligible members uniformly and keeps the one with the lower
    ``load / weight`` (Envoy's weighting), compared by cross-multiplying integers; on a tie
    the first draw wins. With one eligible member, that member.
    """

    name = "least_request"
    __slots__ = ("_load", "_members", "_rng", "_weights")

    def __init__(
        self, members: Sequence[tuple[K, int]], rng: random.Random, load: Callable[[K], int]
    ) -> None:
        self._members: tuple[K, ...] = tuple(member for member, _ in members)
        self._weights: tuple[int, ...] = tuple(weight for _, weight in members)
        self._rng = rng
        self._load = load

    def pick(self, hash_key: str | None, eligible: Callable[[K], bool]) -> K | None:
        first = self._draw(eligible, -1)
        if first < 0:
            return None
        second = self._draw(eligible, first)
        if second < 0:
            return self._members[first]
        load, members, weights = self._load, self._members, self._weights
        if load(members[second]) * weights[first] < load(members[first]) * weights[second]:
            return members[second]
        return members[first]

    def _draw(self, eligible: Callable[[K], bool], exclude: int) -> int:
        """Index of a uniformly drawn eligible member other than ``exclude``, or -1."""
        members = self._members
        # Draw among the others directly so that excluding the first draw costs no retry.
        others = len(members) - (exclude >= 0)
        if others <= 0:
            return -1
        random_ = self._rng.random
        for _ in range(_RANDOM_TRIES):
            i = int(random_() * others)
            if 0 <= exclude <= i:
                i += 1
            if eligible(members[i]):
                return i
        size = len(members)
        candidates = [i for i in range(size) if i != exclude and eligible(members[i])]
        if not candidates:
            return -1
        return candidates[int(random_() * len(candidates))]


class RingHash(Generic[K]):
    """Consistent hashing on a ``HashRing``; round robin when the request has no hash key.

    With a key: the member the key maps to, or when it is ineligible the next distinct
    eligible member clockwise. ``pick(key, eligible) != primary(key)`` tells the caller
    the fallback was taken.
    """

    name = "ring_hash"
    __slots__ = ("_without_key", "ring")

    def __init__(self, ring: HashRing[K], members: Sequence[K], rng: random.Random) -> None:
        self.ring = ring
        self._without_key = RoundRobin(members, rng)

    def primary(self, hash_key: str) -> K | None:
        """The member ``hash_key`` maps to, ignoring eligibility; None only with no members."""
        return self.ring.primary(hash_key)

    def pick(self, hash_key: str | None, eligible: Callable[[K], bool]) -> K | None:
        if hash_key is None:
            return self._without_key.pick(None, eligible)
        return self.ring.pick(hash_key, eligible)


POLICIES: tuple[str, ...] = (
    "least_request",
    "random",
    "ring_hash",
    "round_robin",
    "weighted_round_robin",
)


def build_balancer(
    policy: str,
    members: Sequence[tuple[K, int]],
    *,
    rng: random.Random,
    load: Callable[[K], int] | None = None,
    ring: RingOptions | None = None,
    previous: Balancer[K] | None = None,
) -> Balancer[K]:
    """The balancer for ``policy`` over ``(key, weight >= 1)`` pairs given in a stable order.

    ``load`` (in-flight requests per member) is required by ``least_request``; ``ring``
    sizes the ``ring_hash`` ring (Envoy's defaults when None), which is edited from the
    ring of ``previous`` (the balancer this one replaces) when it has one. Raises ValueError
    for an unknown policy, a weight below 1, a repeated key or a missing ``load``.
    """
    return finish(balancer_steps(policy, members, rng=rng, load=load, ring=ring, previous=previous))


def balancer_steps(
    policy: str,
    members: Sequence[tuple[K, int]],
    *,
    rng: random.Random,
    load: Callable[[K], int] | None = None,
    ring: RingOptions | None = None,
    previous: Balancer[K] | None = None,
) -> Steps[Balancer[K]]:
    """``build_balancer`` in bounded steps (see ``HashRing.building``): the balancer is the
    generator's return value; only ``ring_hash`` takes more than one step, and bad input
    raises at the first."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; expected one of: {', '.join(POLICIES)}")
    seen: set[K] = set()
    for member, weight in members:
        if weight < 1:
            raise ValueError(f"weight must be >= 1, got {weight} for {member!r}")
        if member in seen:
            raise ValueError(f"member {member!r} is listed twice")
        seen.add(member)
    if policy == "round_robin":
        return RoundRobin([member for member, _ in members], rng)
    if policy == "random":
        return WeightedRandom(members, rng)
    if policy == "weighted_round_robin":
        return SmoothWeightedRoundRobin(members)
    if policy == "least_request":
        if load is None:
            raise ValueError("policy 'least_request' needs load (in-flight requests per member)")
        return LeastRequest(members, rng, load)
    base = previous.ring if isinstance(previous, RingHash) else None
    built = yield from HashRing.building(members, ring, previous=base)
    return RingHash(built, [member for member, _ in members], rng)
