"""The access log: one JSON object per line per downstream request.

Lines are gathered in memory and written in one ``write`` per batch — when
``FLUSH_LINES`` are pending or ``FLUSH_DELAY`` after the first pending line — so the event
loop does one syscall per batch, not per request, and never goes through ``logging``.
Path ``-`` is standard output; any other path is opened for appending.

Invariants: a line is a complete JSON object (keys in ``FIELDS`` order) ending in ``\\n``;
a failed write drops that batch and is counted, it never raises into the request path;
``close()`` writes whatever is pending.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from sidecar.telemetry.traceparent import parse as parse_traceparent

FLUSH_LINES = 256
FLUSH_DELAY = 0.2  # seconds a line may wait for company before it is written

FIELDS = (
    "time",
    "listener",
    "method",
    "path",
    "status",
    "duration_ms",
    "upstream_cluster",
    "upstream_endpoint",
    "upstream_endpoint_name",
    "attempts",
    "response_flags",
    "trace_id",
    "request_id",
    "bytes_in",
    "bytes_out",
    "user_agent",
)

# Envoy-style response flags for failures the sidecar answered before an Exchange existed,
# or that only show in the error reason.
FLAG_OF_ERROR = {
    "no_healthy_upstream": "UH",
    "connect_failure": "UF",
    "upstream_timeout": "UT",
    "deadline_exceeded": "UT",
    "overflow": "UO",
    "breaker_open": "UO",
    "upstream_reset": "UR",
    "no_route": "NR",
    "bad_request": "NR",
    "request_timeout": "SI",
    "downstream_disconnect": "DC",
}


def response_flags(flags: str, error: str | None) -> str:
    """The request's flags plus the one its error reason implies; ``-`` when there are none."""
    implied = FLAG_OF_ERROR.get(error) if error else None
    if implied and implied not in flags.split(","):
        flags = f"{flags},{implied}" if flags else implied
    return flags or "-"


def rfc3339(timestamp: float) -> str:
    """UTC, millisecond precision: ``2024-05-01T12:00:00.123Z``."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def trace_id_of(traceparent: bytes | None) -> str | None:
    """The trace id of a W3C ``traceparent`` value, if it is well formed."""
    parsed = parse_traceparent(traceparent) if traceparent is not None else None
    return format(parsed[0], "032x") if parsed is not None else None


class AccessLog:
    def __init__(
        self, stream: TextIO, *, owned: bool, on_error: Callable[[], None] | None = None
    ) -> None:
        self._stream = stream
        self._owned = owned
        self._on_error = on_error
        self._pending: list[str] = []
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def open(cls, path: str, on_error: Callable[[], None] | None = None) -> AccessLog:
        if path == "-":
            return cls(sys.stdout, owned=False, on_error=on_error)
        return cls(open(path, "a", encoding="utf-8"), owned=True, on_error=on_error)

    def write(self, record: dict[str, Any]) -> None:
        pending = self._pending
        pending.append(json.dumps(record, separators=(",", ":")) + "\n")
        if len(pending) >= FLUSH_LINES:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_DELAY, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        batch = "".join(self._pending)
        self._pending.clear()
        try:
            self._stream.write(batch)
            self._stream.flush()
        except (OSError, ValueError):
            if self._on_error is not None:
                self._on_error()

    def close(self) -> None:
        self.flush()
        if self._owned:
            self._stream.close()
