"""The W3C ``traceparent`` field (Trace Context, level 2), read and written as bytes.

``parse`` accepts what OpenTelemetry's ``TraceContextTextMapPropagator`` accepts: version,
trace id, parent id and flags in lower-case hex; version ``ff`` refused; version ``00``
with nothing after the flags, a later version with anything after a ``-``; trace and
parent ids not all zero. ``field`` writes the header line a hop sends on.
"""

from __future__ import annotations

import re

_TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")

SAMPLED = 0x01
RANDOM_TRACE_ID = 0x02  # level 2: the trace id's right 7 bytes are random


def parse(value: bytes) -> tuple[int, int, int] | None:
    """(trace id, parent id, flags) of a well-formed ``traceparent`` value, else None."""
    match = _TRACEPARENT.fullmatch(value.strip(b" \t"))
    if match is None:
        return None
    version, trace, parent, flags, rest = match.groups()
    if version == b"ff" or (version == b"00" and rest is not None):
        return None
    trace_id, parent_id = int(trace, 16), int(parent, 16)
    if not trace_id or not parent_id:
        return None
    return trace_id, parent_id, int(flags, 16)


def field(trace_id: int, span_id: int, flags: int) -> bytes:
    """The ``traceparent`` header line naming ``span_id`` as the parent of the next hop."""
    return b"traceparent: 00-%032x-%016x-%02x\r\n" % (trace_id, span_id, flags)
