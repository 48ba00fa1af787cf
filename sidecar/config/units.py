"""Human units in config: durations (``250ms``, ``5s``, ``1m``, ``1h30m``) and sizes (``64KiB``).

Durations become float seconds, sizes become int bytes. A bare number is seconds/bytes.
Errors are ``ValueError`` with a message fit to follow a config path.
"""

from __future__ import annotations

import re

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def parse_duration(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '250ms', '5s' or '1m', got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"must be >= 0, got {value!r}")
        return float(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a duration like '250ms', '5s' or '1m', got {value!r}")
    text = value.strip()
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        raise ValueError(f"expected a duration like '250ms', '5s' or '1m', got {value!r}")
    return total


def parse_size(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected a size like '64KiB' or '1MiB', got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"must be >= 0, got {value!r}")
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a size like '64KiB' or '1MiB', got {value!r}")
    match = _SIZE.fullmatch(value.strip())
    if not match:
        raise ValueError(f"expected a size like '64KiB' or '1MiB', got {value!r}")
    unit = (match.group(2) or "B").lower()
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def format_duration(seconds: float) -> str:
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{round(seconds * 1000, 3):g}ms"
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"
