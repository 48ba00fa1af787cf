"""The PNG timeline of a run (or of two, side by side): what happened when, per upstream.

Four panels per upstream and run, sharing the time axis: client success rate; client
latency p50 and p99 (log scale); each endpoint's share of the attempts; and one lane per
endpoint with the intervals it spent under one of the scenario's faults, with its breaker
open, ejected, unhealthy or out of discovery shaded. Two runs share their y scales.
Everything is read from the JSON summary, so the picture shows exactly the numbers the
JSON holds.

matplotlib is an optional dependency (``pip install 'pilotfish[simulate]'``);
``require_matplotlib`` says so plainly when it is missing, before a run starts.
"""

from __future__ import annotations

from typing import Any

from sidecar.simulate.stats import STATES

_STATE_COLOURS = {
    "fault": "#212121",
    "breaker_open": "#fb8c00",
    "ejected": "#e53935",
    "unhealthy": "#7e57c2",
    "gone": "#9e9e9e",
}


class PlotUnavailable(Exception):
    """matplotlib is not installed."""


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotUnavailable(
            "--plot needs matplotlib, which is not installed: pip install 'pilotfish[simulate]'"
        ) from None


def render(runs: list[tuple[str, dict[str, Any]]], path: str) -> None:
    """Write the timeline of ``runs`` (label, JSON summary) to the PNG file ``path``."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    upstreams = list(runs[0][1]["upstreams"])
    rows = 4 * len(upstreams)
    fig = Figure(figsize=(7.5 * len(runs), 2.4 * rows), layout="constrained")
    grid = fig.add_gridspec(rows, len(runs), height_ratios=[1, 1, 1, 0.9] * len(upstreams))
    for u, name in enumerate(upstreams):
        first: list[Any] = []
        for col, (label, data) in enumerate(runs):
            axes = [fig.add_subplot(grid[4 * u + i, col]) for i in range(4)]
            for i, ax in enumerate(axes):
                if i:
                    ax.sharex(axes[0])
                if first:
                    ax.sharey(first[i])  # the runs side by side on the same scales
            first = first or axes
            _panels(axes, data["upstreams"][name], f"{name} — {label}", data["duration_s"])
        lowest = min(
            (
                v
                for _, data in runs
                for v in data["upstreams"][name]["timeline"]["success_rate"]
                if v is not None
            ),
            default=1.0,
        )
        first[0].set_ylim(lowest * 100 - 1, 100.5)
    fig.savefig(path, dpi=100)


def _panels(axes: list[Any], summary: dict[str, Any], title: str, duration: float) -> None:
    tl = summary["timeline"]
    width = tl["bin_s"]
    x = [(i + 0.5) * width for i in range(len(tl["requests"]))]
    ok, lat, share, lanes = axes
    ok.set_title(title, loc="left", fontsize=10)
    rate = [None if v is None else v * 100 for v in tl["success_rate"]]
    ok.plot(x, rate, color="#2e7d32", linewidth=1.2)
    ok.set_ylabel("success %")
    lat.plot(x, tl["p50_ms"], label="p50", color="#1e88e5", linewidth=1)
    lat.plot(x, tl["p99_ms"], label="p99", color="#8e24aa", linewidth=1)
    lat.set_yscale("log")
    lat.set_ylabel("latency ms")
    lat.legend(loc="upper right", fontsize=8)
    endpoints = summary["endpoints"]
    totals = [sum(tl["attempts"][n][i] for n in endpoints) for i in range(len(x))]
    stacks = [
        [c / t * 100 if t else 0 for c, t in zip(tl["attempts"][n], totals, strict=True)]
        for n in endpoints
    ]
    share.stackplot(x, stacks, labels=endpoints, alpha=0.85)
    share.set_ylabel("attempts %")
    share.set_ylim(0, 100)
    share.legend(loc="upper right", fontsize=7, ncol=min(6, len(endpoints)))
    band = 0.8 / len(STATES)  # each endpoint's lane holds one thin band per state
    for lane, name in enumerate(endpoints):
        for i, state in enumerate(STATES):
            spans = _spans(tl[state][name], width)
            if spans:
                bottom = lane + 0.4 - (i + 1) * band
                lanes.broken_barh(spans, (bottom, band), color=_STATE_COLOURS[state])
    lanes.set_yticks(range(len(endpoints)), endpoints, fontsize=8)
    lanes.set_ylim(-0.6, len(endpoints) + 0.3)  # headroom for the legend
    lanes.set_xlim(0, duration)
    lanes.set_xlabel("seconds")
    handles = [
        lanes.bar(0, 0, color=colour, label=state.replace("_", " "))
        for state, colour in _STATE_COLOURS.items()
    ]
    lanes.legend(handles=handles, loc="upper right", fontsize=7, ncol=len(handles))


def _spans(fractions: list[float | None], width: float) -> list[tuple[float, float]]:
    """Runs of bins in which the state held at any sampled moment, as (start, length)."""
    spans: list[tuple[float, float]] = []
    start = None
    for i, value in enumerate([*fractions, None]):
        if value and start is None:
            start = i
        elif not value and start is not None:
            spans.append((start * width, (i - start) * width))
            start = None
    return spans
