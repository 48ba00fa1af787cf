"""The load of one upstream: when requests arrive, and what each one is.

The rate over time is the load's phases (constant, or a linear ramp) plus any bursts on
top. Arrivals are ``even`` (one every 1/rate seconds) or ``poisson`` (exponential gaps,
restarted at every change of rate, which is exact for piecewise-constant rates and close
for ramps). Each request draws its method and body size from the mix and, when the load
has keys, a hash key from a uniform or Zipf distribution over ``count`` keys.

Invariants: no arrival at or after the end of the run; every draw comes from the rng
handed in, in a fixed order, so the same seed gives the same requests whatever the
configuration does with them.
"""

from __future__ import annotations

import math
import random
from array import array
from bisect import bisect_right
from itertools import accumulate

from sidecar.simulate.scenario import LoadSpec


class Traffic:
    def __init__(self, load: LoadSpec, duration: float, rng: random.Random) -> None:
        self._rng = rng
        self._end = duration
        self._poisson = load.arrivals == "poisson"
        # Segments (start, end, rate at start, rate at end) of the base rate.
        segments: list[tuple[float, float, float, float]] = []
        if load.phases is None:
            assert load.rate is not None
            segments.append((0.0, duration, load.rate, load.rate))
        else:
            t = 0.0
            for phase in load.phases:
                end = duration if phase.duration is None else min(duration, t + phase.duration)
                if phase.rate is not None:
                    segments.append((t, end, phase.rate, phase.rate))
                else:
                    assert phase.start is not None and phase.to is not None
                    segments.append((t, end, phase.start, phase.to))
                t = end
                if t >= duration:
                    break
        self._segments = segments
        self._bursts = [(b.at, min(duration, b.at + b.duration), b.rate) for b in load.bursts]
        edges = {0.0, duration}
        for start, end, _, _ in segments:
            edges.update((start, end))
        for start, end, _ in self._bursts:
            edges.update((start, end))
        self._edges = sorted(e for e in edges if e <= duration)
        mix = load.mix
        self._methods = [m.method for m in mix]
        self._bodies = [m.body for m in mix]
        self._mix_bounds = list(accumulate(m.weight for m in mix))
        keys = load.keys
        self._key_count = keys.count if keys is not None else 0
        self._zipf: array[float] | None = None
        if keys is not None and keys.distribution == "zipf":
            self._zipf = array(
                "d", accumulate(1.0 / (k**keys.exponent) for k in range(1, keys.count + 1))
            )

    def rate_at(self, t: float) -> float:
        rate = 0.0
        for start, end, r0, r1 in self._segments:
            if start <= t < end:
                rate = r0 if r0 == r1 else r0 + (r1 - r0) * (t - start) / (end - start)
                break
        for start, end, extra in self._bursts:
            if start <= t < end:
                rate += extra
        return rate

    def _interval(self, t: float) -> tuple[float, float]:
        """The span between two changes of rate that holds ``t``."""
        i = bisect_right(self._edges, t)
        start = self._edges[i - 1] if i else 0.0
        return start, self._edges[i] if i < len(self._edges) else math.inf

    def _ramping(self, t: float) -> bool:
        return any(start <= t < end and r0 != r1 for start, end, r0, r1 in self._segments)

    def first_arrival(self) -> float | None:
        """Even arrivals start at once; Poisson ones after a first gap."""
        if not self._poisson and self.rate_at(0.0) > 0:
            return 0.0
        return self.next_arrival(0.0)

    def next_arrival(self, t: float) -> float | None:
        """The first arrival after ``t``, or None when the run ends first."""
        while t < self._end:
            rate = self.rate_at(t)
            start, edge = self._interval(t)
            if rate <= 0:
                t = edge
                if t < self._end and self.rate_at(t) > 0 and not self._poisson:
                    return t  # even arrivals start with the span
                continue
            if self._poisson:
                nxt = t + self._rng.expovariate(rate)
            elif self._ramping(t):
                nxt = t + 1.0 / rate
            else:
                # Counted from the span's start, not added up: no drift over a long run.
                nxt = start + (math.floor((t - start) * rate + 1e-6) + 1) / rate
            if nxt < edge:
                return nxt if nxt < self._end else None
            t = edge  # the rate changes first: Poisson is memoryless, so draw again there
            if not self._poisson and t < self._end and self.rate_at(t) > 0:
                return t
        return None

    def request(self) -> tuple[str, int, str | None]:
        """Method, body size and hash key of the next request."""
        rng = self._rng
        i = 0
        if len(self._methods) > 1:
            i = bisect_right(self._mix_bounds, rng.random() * self._mix_bounds[-1])
        key = None
        if self._key_count:
            if self._zipf is not None:
                k = bisect_right(self._zipf, rng.random() * self._zipf[-1])
                key = f"k{min(k, self._key_count - 1)}"
            else:
                key = f"k{rng.randrange(self._key_count)}"
        return self._methods[i], self._bodies[i], key
