"""What a run says: the summary as JSON (for scripts) and as a table (for people).

``to_json`` is the whole result: per upstream the summary and the timeline. Numbers are
rounded to a fixed number of places and keys come in a fixed order, so equal results give
byte-identical JSON. ``table`` prints the summary of one run; ``compare`` prints two runs
side by side with the difference of every number.
"""

from __future__ import annotations

import json
from typing import Any

from sidecar.simulate.driver import Result, UpstreamRun
from sidecar.simulate.stats import STATES, UpstreamStats

_LABELS = {
    "fault": "time under a fault",
    "breaker_open": "time with breaker open",
    "ejected": "time ejected",
    "unhealthy": "time unhealthy",
    "gone": "time out of discovery",
}


def _r(value: float | None, places: int = 6) -> float | None:
    return None if value is None else round(value, places)


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 6) if den else None


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 3)


def to_json(result: Result) -> dict[str, Any]:
    return {
        "description": result.description,
        "duration_s": _r(result.duration),
        "seed": result.seed,
        "upstreams": {name: _upstream(run) for name, run in result.upstreams.items()},
    }


def dumps(result: Result) -> str:
    return json.dumps(to_json(result), indent=2, ensure_ascii=False) + "\n"


def _upstream(run: UpstreamRun) -> dict[str, Any]:
    s = run.stats
    first_fault, first_ejection = run.first_fault, s.first_ejection
    attempts = sum(s.by_endpoint.values())
    out: dict[str, Any] = {
        "policy": run.policy,
        "endpoints": run.endpoints,
        "requests": s.requests,
        "success_rate": _ratio(s.successes, s.requests),
        "latency_ms": {
            "p50": _ms(s.latency.quantile(0.5)),
            "p99": _ms(s.latency.quantile(0.99)),
            "p99.9": _ms(s.latency.quantile(0.999)),
            "mean": _ms(s.latency.total / s.latency.count if s.latency.count else None),
            "max": _ms(s.latency.max if s.latency.count else None),
        },
        "attempts": s.attempts,
        "amplification": _ratio(s.attempts, s.requests),
        "retries": s.events["retry"],
        "retry_budget_exhausted": s.events["retry_budget_exhausted"],
        "breaker_rejected": s.events["breaker_rejected"],
        "attempts_by_outcome": dict(sorted(s.outcomes.items())),
        "client_answers": dict(sorted(s.answers.items())),
        "first_fault_s": _r(first_fault),
        "first_ejection_s": _r(first_ejection),
        "time_to_first_ejection_s": (
            _r(first_ejection - first_fault)
            if first_fault is not None and first_ejection is not None
            else None
        ),
        "ejections": s.ejection_count,
        "ejection_log": [
            {k: (_r(v) if isinstance(v, float) else v) for k, v in e.items()} for e in s.ejections
        ],
        "panic": {"entered": s.panic_entered, "seconds": _r(s.panic_seconds, 3)},
        "traffic_share": {n: _ratio(c, attempts) for n, c in s.by_endpoint.items()},
    }
    for state in STATES:
        out[f"{state}_s"] = {n: _r(v, 3) for n, v in s.state_seconds[state].items()}
    if s.keyed:
        seen, moved = s.key_counts()
        out["keys"] = {
            "count": run.key_count,
            "seen": seen,
            "moved": moved,
            "moved_share": _ratio(moved, seen),
            "away_at_end": s.keys_away_at_end,
            "fallback_attempts": s.fallback_attempts,
            "fallback_share": _ratio(s.fallback_attempts, s.keyed_attempts),
        }
    out["timeline"] = _timeline(s)
    return out


def _timeline(s: UpstreamStats) -> dict[str, Any]:
    def share(counts: list[int]) -> list[float | None]:
        return [round(c / t, 3) if t else None for c, t in zip(counts, s.bin_ticks, strict=True)]

    timeline: dict[str, Any] = {
        "bin_s": s.bin,
        "requests": s.bin_requests,
        "success_rate": [
            _ratio(ok, n) for ok, n in zip(s.bin_successes, s.bin_requests, strict=True)
        ],
        "p50_ms": [_ms(h.quantile(0.5)) for h in s.bin_latency],
        "p99_ms": [_ms(h.quantile(0.99)) for h in s.bin_latency],
        "attempts": s.bin_attempts,
        "panic": share(s.bin_panic),
    }
    for state in STATES:
        timeline[state] = {n: share(c) for n, c in s.bin_states[state].items()}
    return timeline


# -- tables -----------------------------------------------------------------------------

Row = tuple[str, Any, str]  # label, value, unit: "%", "ms", "s", "x", "n" or "" (text)


def rows(summary: dict[str, Any], zeros: bool = False) -> list[Row]:
    """The table's rows for one upstream's JSON summary (state rows that are zero only
    with ``zeros``)."""
    lat = summary["latency_ms"]
    out: list[Row] = [
        ("requests", summary["requests"], "n"),
        ("client success rate", summary["success_rate"], "%"),
        ("client latency p50", lat["p50"], "ms"),
        ("client latency p99", lat["p99"], "ms"),
        ("client latency p99.9", lat["p99.9"], "ms"),
        ("retry amplification", summary["amplification"], "x"),
        ("retries", summary["retries"], "n"),
        ("retry budget exhausted", summary["retry_budget_exhausted"], "n"),
    ]
    out += [(f"attempts: {k}", v, "n") for k, v in summary["attempts_by_outcome"].items()]
    out += [(f"answers: {k}", v, "n") for k, v in summary["client_answers"].items()]
    out += [
        ("first fault at", summary["first_fault_s"], "s"),
        ("first fault → first ejection", summary["time_to_first_ejection_s"], "s"),
        ("ejections", summary["ejections"], "n"),
        ("panic entered", summary["panic"]["entered"], "n"),
        ("time in panic", summary["panic"]["seconds"], "s"),
    ]
    for state in STATES:
        out += [
            (f"{_LABELS[state]}: {n}", v, "s")
            for n, v in summary[f"{state}_s"].items()
            if v or zeros
        ]
    out += [(f"traffic share: {n}", v, "%") for n, v in summary["traffic_share"].items()]
    keys = summary.get("keys")
    if keys:
        out += [
            ("keys moved", keys["moved_share"], "%"),
            ("keys away from home at the end", keys["away_at_end"], "n"),
            ("attempts served by ring fallback", keys["fallback_share"], "%"),
        ]
    return out


def _fmt(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "%":
        return f"{value * 100:.3f} %"
    if unit == "ms":
        return f"{value:.3f} ms" if value < 10 else f"{value:.1f} ms"
    if unit == "s":
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
    if unit == "x":
        return f"{value:.4f}"
    if unit == "n":
        return f"{value:,}"
    return str(value)


def _delta(a: Any, b: Any, unit: str) -> str:
    if a is None or b is None or unit == "" or a == b:
        return ""
    d = b - a
    if unit == "%":
        return f"{d * 100:+.3f} pp"
    if unit == "n":
        return f"{d:+,}"
    if unit == "x":
        return f"{d:+.4f}"
    return f"{d:+.3f} {unit}"


def _heading(name: str, summary: dict[str, Any]) -> str:
    count = len(summary["endpoints"])
    return f"upstream {name} ({summary['policy']}, {count} endpoints)"


def table(result: Result) -> str:
    data = to_json(result)
    lines = []
    for name, summary in data["upstreams"].items():
        body = [(label, _fmt(v, unit)) for label, v, unit in rows(summary)]
        width = max(len(label) for label, _ in body)
        lines.append(_heading(name, summary))
        lines += [f"  {label:<{width}}  {value:>14}".rstrip() for label, value in body]
        lines.append("")
    return "\n".join(lines)


def compare(a: Result, b: Result, names: tuple[str, str]) -> str:
    da, db = to_json(a), to_json(b)
    lines = []
    for name, sa in da["upstreams"].items():
        sb = db["upstreams"][name]
        ra = {label: (v, unit) for label, v, unit in rows(sa, zeros=True)}
        rb = {label: (v, unit) for label, v, unit in rows(sb, zeros=True)}
        labels = list(ra) + [label for label in rb if label not in ra]
        body = []
        for label in labels:
            unit = (ra.get(label) or rb[label])[1]
            missing = 0 if unit == "n" else None  # a count absent from one run is zero there
            va = ra[label][0] if label in ra else missing
            vb = rb[label][0] if label in rb else missing
            if unit == "s" and label.startswith("time ") and not va and not vb:
                continue  # a state neither run was in
            body.append((label, _fmt(va, unit), _fmt(vb, unit), _delta(va, vb, unit)))
        width = max(len(row[0]) for row in body)
        wa = max(14, len(names[0]))
        wb = max(14, len(names[1]))
        lines.append(_heading(name, sa))
        lines.append(f"  {'':<{width}}  {names[0]:>{wa}}  {names[1]:>{wb}}  {'difference':>14}")
        lines += [
            f"  {label:<{width}}  {va:>{wa}}  {vb:>{wb}}  {d:>14}".rstrip()
            for label, va, vb, d in body
        ]
        lines.append("")
    return "\n".join(lines)
