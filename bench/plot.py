"""Draw latency against offered load, one line per target, into a PNG.

Invariants: matplotlib is an optional bench extra, imported only here and only when a plot is
drawn; without it the run still produces its tables and ``plot_latency`` says why it drew
nothing. Points show the median over rounds, bars the lowest and highest round; a ring marks
a point where the target did not keep up with the offered load in some round.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bench.stats import TargetResults

PERCENTILES = ("p50", "p90", "p99")


def plot_latency(results: Sequence[TargetResults], rates: Sequence[int], out: Path) -> str | None:
    """Write the PNG; return None on success or the reason nothing was drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib)"

    measured = [r for r in results if r.measured]
    if not measured:
        return "no target was measured"
    fig, axes = plt.subplots(1, len(PERCENTILES), figsize=(15, 5), sharey=True)
    for axis, percentile in zip(axes, PERCENTILES, strict=True):
        any_strained = False
        for r in measured:
            s = r.summary()
            points = [(rate, s.get(f"{percentile}@{rate}")) for rate in rates]
            points = [(rate, v) for rate, v in points if v is not None]
            if not points:
                continue
            xs = [rate for rate, _ in points]
            ys = [v.median for _, v in points]
            errors = [[v.median - v.low for _, v in points], [v.high - v.median for _, v in points]]
            axis.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, label=r.label)
            strained = [
                (rate, v.median)
                for rate, v in points
                if (flag := s.get(f"overloaded@{rate}")) is not None and flag.high > 0
            ]
            if strained:
                axis.scatter(
                    [x for x, _ in strained],
                    [y for _, y in strained],
                    s=140,
                    facecolors="none",
                    edgecolors="black",
                    zorder=5,
                    label="did not keep up" if not any_strained else None,
                )
                any_strained = True
        axis.set_title(f"{percentile} latency, open loop")
        axis.set_xlabel("offered load (req/s)")
        axis.set_xticks(list(rates))
        axis.set_yscale("log")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("latency (ms, log scale)")
    axes[-1].legend(loc="upper left", fontsize="small")
    fig.suptitle("Latency vs offered load (100 B body; proxy on one core)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return None
