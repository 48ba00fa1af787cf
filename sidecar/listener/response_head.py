"""The pieces of a response head the listener writes: status line, Date, header block.

Status lines are cached per (status, reason) and the ``Date`` field per second, so the
per-request work is lookups; a header block is the fields as ``Name: value\\r\\n`` lines.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from http import HTTPStatus

from multidict import CIMultiDict

_REASONS = {s.value: s.phrase for s in HTTPStatus}


def reason_of(status: int) -> str:
    return _REASONS.get(status, "Unknown")


_STATUS_LINES: dict[tuple[int, str], bytes] = {}


def status_line(status: int, reason: str) -> bytes:
    line = _STATUS_LINES.get((status, reason))
    if line is None:
        # The reason is bytes as the upstream sent them (read as latin-1), or ours.
        text = f"HTTP/1.1 {status} {reason or reason_of(status)}\r\n"
        line = text.encode("latin-1", "replace")
        if len(_STATUS_LINES) < 256:  # the common pairs; an odd reason is not kept
            _STATUS_LINES[(status, reason)] = line
    return line


_date: tuple[int, bytes] = (0, b"")


def date_field() -> bytes:
    """``Date: ...\\r\\n`` for this second (RFC 9110 §6.6.1: an origin server with a clock
    dates its answers), formatted once a second."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, b"Date: %s\r\n" % formatdate(now, usegmt=True).encode())
    return _date[1]


def header_block(headers: CIMultiDict[str]) -> bytes:
    """``headers`` of an answer the sidecar makes itself as a block of ``Name: value\\r\\n``
    lines, dated, with framing and Connection fields left out (the connection writes its
    own)."""
    for name in ("Content-Length", "Transfer-Encoding", "Connection"):
        headers.popall(name, None)
    date = b"" if "Date" in headers else date_field()
    if not headers:
        return date
    text = "\r\n".join(map(": ".join, headers.items()))  # joined in C
    return date + (text + "\r\n").encode("utf-8", "surrogateescape")
