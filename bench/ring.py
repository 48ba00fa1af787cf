"""Hash ring costs: ``python -m bench.ring [--against REV] [--sizes 7,20,50,200]``.

Per cluster size, equal weights and three patterns of unequal ones: the CPU a ring built
from scratch takes, and that of the change of one endpoint (join, leave, weight one more or
one less) from the ring before; the longest step of each build (in brackets); and the
longest the event loop is blocked when a ``Cluster`` adopts the change from a discovery
callback (a task that only yields records the gaps between its turns). Lookup: ``pick``
for keys whose endpoint is eligible, and the fallback for keys whose endpoint is not, in
microseconds per key; with ``--against`` the ring of that git revision is measured in the
same run, the two interleaved round by round so that a shared machine's drift falls on
both. Memory: the ring's arrays, and the peak of the allocations while building
(tracemalloc).

Invariants: nothing but this process, its garbage collector settled as ``pilotfish run``
settles it; every figure is the best (CPU, lookup) or the worst (loop blocking) of a few
repetitions.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import random
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from discovery.model import Endpoint, EndpointSet
from resilience.clock import MONOTONIC
from resilience.hashring import HashRing
from sidecar.cluster import Cluster
from sidecar.config.load import load_text
from sidecar.runtime import settle_garbage_collector

Members = list[tuple[str, int]]
KEYS = [f"user-{i}" for i in range(20_000)]


def hosts(count: int) -> list[str]:
    return [f"10.0.{i // 250}.{i % 250 + 1}:8080" for i in range(count)]


PATTERNS: dict[str, Callable[[int], int]] = {
    "equal": lambda i: 1,
    "canary (one at 1, the rest 10)": lambda i: 1 if i == 3 else 10,
    "weights 1-5": lambda i: 1 + i % 5,
    "one heavy (one at 10, the rest 1)": lambda i: 10 if i == 3 else 1,
}


def changes(count: int, weight: Callable[[int], int]) -> list[tuple[str, Members, Members]]:
    names = hosts(count + 1)
    full = [(name, weight(i)) for i, name in enumerate(names)]
    before = full[:count]
    heavier = [(n, w + 1 if i == 1 else w) for i, (n, w) in enumerate(before)]
    lighter = [(n, max(1, w - 1) if i == 1 else w) for i, (n, w) in enumerate(before)]
    found = [
        ("join", before, full),
        ("leave", before, before[1:]),
        ("heavier", before, heavier),
    ]
    return [*found, ("lighter", before, lighter)] if lighter != before else found


def steps_of(members: Members, previous: HashRing[str] | None) -> tuple[float, float]:
    """Seconds of CPU for the whole build, and for its longest step."""
    steps = HashRing.building(members, previous=previous)
    total = longest = 0.0
    while True:
        start = time.perf_counter()
        try:
            next(steps)
        except StopIteration:
            took = time.perf_counter() - start
            return total + took, max(longest, took)
        took = time.perf_counter() - start
        total += took
        longest = max(longest, took)


def best(runs: list[tuple[float, float]]) -> tuple[float, float]:
    return min(r[0] for r in runs), min(r[1] for r in runs)


def cluster(policy: str = "ring_hash") -> Cluster:
    doc = {
        "service": {"name": "bench", "port": 1},
        "upstreams": [
            {
                "name": "api",
                "listen": "127.0.0.1:0",
                "discovery": {"static": ["127.0.0.1:1"]},
                "balancer": {"policy": policy, "hash_on": "header:x-user"},
            }
        ],
    }
    config = load_text(yaml.safe_dump(doc), environ={}).upstreams[0]
    return Cluster(config, None, clock=MONOTONIC, rng=random.Random(1))  # type: ignore[arg-type]


def snapshot(members: Members) -> EndpointSet:
    endpoints = []
    for name, weight in members:
        host, port = name.rsplit(":", 1)
        endpoints.append(Endpoint(host, int(port), weight=weight))
    return EndpointSet.of(endpoints)


async def blocked(before: Members, after: Members, rounds: int) -> tuple[float, int]:
    """The longest gap between two turns of a task that only yields while a cluster adopts
    ``after`` (then ``before`` again), and the turns the slowest adoption spanned."""
    target = cluster()
    target.update(snapshot(before))
    await target.balanced()
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    worst, turns = 0.0, 0
    loop = asyncio.get_running_loop()
    for _ in range(rounds):
        for members in (after, before):
            gaps.clear()
            loop.call_soon(target.update, snapshot(members))
            await asyncio.sleep(0)
            await target.balanced()
            await asyncio.sleep(0)
            worst = max(worst, *gaps)
            turns = max(turns, len(gaps))
    task.cancel()
    return worst, turns


def ring_bytes(ring: HashRing[str]) -> int:
    owners, starts, _, _ = ring._lookup
    arrays = {id(a): a for a in (ring._points, ring._point_starts, owners, starts)}
    return sum(a.itemsize * len(a) for a in arrays.values())


def peak(build: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        build()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def prior_ring(revision: str) -> Any:
    """``HashRing`` of ``revision``, its package imported under another name."""
    root = Path(tempfile.mkdtemp(prefix="ring-"))
    archive = subprocess.run(
        ["git", "archive", revision, "resilience"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    (root / "resilience").rename(root / "prior_resilience")
    for module in (root / "prior_resilience").glob("*.py"):
        text = module.read_text().replace("resilience.", "prior_resilience.")
        module.write_text(text)
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module("prior_resilience.hashring").HashRing
    finally:
        sys.path.remove(str(root))
        shutil.rmtree(root)


def lookups(rings: dict[str, Any], members: Members, rounds: int) -> dict[str, tuple[float, float]]:
    """Per ring: µs per ``pick`` with every endpoint eligible, and per fallback pick."""
    built = {label: make(members) for label, make in rings.items()}
    down = members[0][0]
    fallen = [k for k in KEYS if next(iter(built.values())).primary(k) == down][:2000]
    always: Callable[[str], bool] = lambda m: True  # noqa: E731
    without: Callable[[str], bool] = lambda m: m != down  # noqa: E731
    times: dict[str, list[tuple[float, float]]] = {label: [] for label in built}
    for _ in range(rounds):
        for label, ring in built.items():
            pick = ring.pick
            start = time.perf_counter()
            for key in KEYS:
                pick(key, always)
            middle = time.perf_counter()
            for key in fallen:
                pick(key, without)
            end = time.perf_counter()
            times[label].append(((middle - start) / len(KEYS), (end - middle) / len(fallen)))
    return {
        label: (min(t[0] for t in v) * 1e6, min(t[1] for t in v) * 1e6)
        for label, v in times.items()
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ring", description=__doc__)
    parser.add_argument("--sizes", default="7,20,50,200")
    parser.add_argument("--against", help="a git revision whose ring is measured beside")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    try:
        import uvloop  # the sidecar's loop
    except ImportError:  # pragma: no cover
        uvloop = None  # type: ignore[assignment]

    settle_garbage_collector()  # as ``pilotfish run`` does once started
    print(
        "| endpoints | weights | from scratch: CPU (longest step) | join | leave "
        "| one weight +1 | one weight -1 | loop blocked at most (turns) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for count in sizes:
        for pattern, weight in PATTERNS.items():
            if pattern != "equal" and count < 7:
                continue
            members = [(name, weight(i)) for i, name in enumerate(hosts(count))]
            scratch = best([steps_of(members, None) for _ in range(max(1, args.rounds // 2))])
            cells = []
            worst, turns = 0.0, 0
            for _, before, after in changes(count, weight):
                base = HashRing(before)
                cells.append(best([steps_of(after, base) for _ in range(args.rounds)]))
                runner = uvloop.run if uvloop is not None else asyncio.run
                gap, spanned = runner(blocked(before, after, max(1, args.rounds // 2)))
                worst, turns = max(worst, gap), max(turns, spanned)
            shown = [f"{c[0] * 1e3:.1f} ms ({c[1] * 1e3:.1f})" for c in cells]
            row = [
                str(count),
                pattern,
                f"{scratch[0] * 1e3:.1f} ms ({scratch[1] * 1e3:.1f})",
                *shown,
                *(["n/a"] if len(shown) == 3 else []),
                f"{worst * 1e3:.1f} ms ({turns})",
            ]
            print("| " + " | ".join(row) + " |")

    print()
    rings: dict[str, Any] = {"now": HashRing}
    if args.against:
        prior = prior_ring(args.against)
        rings = {args.against: prior, "now": HashRing}
    print("| ring | " + " | ".join(f"{label}: pick, fallback (µs)" for label in rings) + " |")
    print("|---|" + "---|" * len(rings))
    for label, members in (
        ("7 equal", [(n, 1) for n in hosts(7)]),
        ("200 equal", [(n, 1) for n in hosts(200)]),
        ("20 of weights 1-100", [(n, 1 + (i * 37) % 100) for i, n in enumerate(hosts(20))]),
    ):
        measured = lookups(rings, members, args.rounds)
        print(
            f"| {label} | " + " | ".join(f"{a:.2f}, {b:.2f}" for a, b in measured.values()) + " |"
        )

    print()
    print("| ring | arrays | peak while building from scratch | peak while adopting a join |")
    print("|---|---|---|---|")
    for count, pattern in ((200, "equal"), (200, "weights 1-5"), (20, "weights 1-5")):
        members = [(n, PATTERNS[pattern](i)) for i, n in enumerate(hosts(count + 1))]
        base = HashRing(members[:-1])
        whole = peak(lambda m=members: HashRing(m))  # type: ignore[misc]
        join = peak(lambda m=members, b=base: HashRing(m, previous=b))  # type: ignore[misc]
        size = ring_bytes(HashRing(members))
        mib = 1 << 20
        print(
            f"| {count + 1}, {pattern} | {size / mib:.1f} MiB | {whole / mib:.1f} MiB "
            f"| {join / mib:.1f} MiB |"
        )


if __name__ == "__main__":
    main()
