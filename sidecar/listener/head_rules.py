"""RFC 9112 rules for a request head that the C parser (llhttp) leaves to its user.

llhttp already refuses malformed request lines and fields, a Content-Length beside a
Transfer-Encoding, conflicting lengths, and a Transfer-Encoding whose final coding is not
``chunked``. What it accepts and a proxy must still refuse, as nginx and HAProxy do:

- ``Host``: none in an HTTP/1.1 request, more than one, or one that is no authority
  (RFC 9112 §3.2: 400);
- a protocol other than HTTP/1.0 and HTTP/1.1: ``HTTP/2.0`` and ``HTTP/0.9`` spoken in an
  HTTP/1 request line (505), ``RTSP/1.0`` and ``ICE/1.0`` (400);
- a transfer coding other than one final ``chunked`` (RFC 9112 §6.1: 501, since the body
  would be passed on without its coding — never dropped silently), and any
  Transfer-Encoding in an HTTP/1.0 request (§6.1: the framing is faulty; 400);
- request targets: the origin form (``/path``) is served; the absolute form
  (``http://authority/path``) is taken apart into its path and its authority, which
  replaces ``Host`` (§3.2.2); other forms are the handler's to refuse.

Everything here is pure: a head in, a ``Refusal`` (or a value) out.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from sidecar.listener.fields import RequestFields


class Refusal(NamedTuple):
    """An answer the listener gives instead of serving a request."""

    status: int
    detail: str  # the body's text and the log's
    error: str = "bad_request"  # the x-pilotfish-error reason


# Anything that cannot appear in an authority (RFC 3986 §3.2): blanks, controls, the
# path/query/fragment/userinfo delimiters and the backslash some parsers treat as "/".
_BAD_HOST = re.compile(r"[\x00-\x20\x7f/\\?#@]")
_BAD_HOST_BYTES = re.compile(rb"[\x00-\x20\x7f/\\?#@]")
_CODINGS = re.compile(rb"(?im)^transfer-encoding:[ \t]*([^\r\n]*)")

MISSING_HOST = Refusal(400, "an HTTP/1.1 request needs a Host field")
MANY_HOSTS = Refusal(400, "a request may carry only one Host field")
BAD_HOST = Refusal(400, "the Host field is not a host[:port]")
FOREIGN_PROTOCOL = Refusal(400, "the request line names a protocol other than HTTP")
TE_IN_HTTP10 = Refusal(400, "Transfer-Encoding in an HTTP/1.0 request (framing is faulty)")
UNKNOWN_CODING = Refusal(
    501, "only the chunked transfer coding is implemented, once", "not_implemented"
)
ONLY_HTTP = Refusal(400, "only http:// request targets are proxied")


def version_refusal(version: str) -> Refusal | None:
    """``version`` as llhttp reports it; llhttp itself refuses 1.2, 3.0 and the like."""
    if version == "1.1" or version == "1.0":
        return None
    return Refusal(505, f"HTTP/{version} is not served here", "http_version_not_supported")


def check_head(version: str, fields: RequestFields) -> Refusal | None:
    """The rules of this module's docstring that need only the parsed head."""
    host = fields.first(b"host")
    repeated = fields.repeated
    if host is None:
        if version == "1.1":
            return MISSING_HOST
    elif b"host" in repeated:
        return MANY_HOSTS
    elif _BAD_HOST_BYTES.search(host):
        return BAD_HOST
    coding = fields.first(b"transfer-encoding")
    if coding is not None:
        if version != "1.1":
            return TE_IN_HTTP10
        if b"transfer-encoding" in repeated or b"," in coding:
            # llhttp checked that the final coding is chunked; any other is not ours.
            return UNKNOWN_CODING
    return None


def transfer_coding_refusal(chunk: bytes) -> Refusal:
    """The answer to llhttp's "invalid Transfer-Encoding" error: a coding follows
    ``chunked``. Repeated chunked is 501 (a coding applied twice is not implemented);
    any other coding after chunked leaves the body's length unknown (RFC 9112 §6.3: 400).
    ``chunk`` is the data that held the field; where it does not show it, 400."""
    tokens = [
        token.strip().lower()
        for value in _CODINGS.findall(chunk)
        for token in value.split(b",")
        if token.strip()
    ]
    if len(tokens) > 1 and all(token == b"chunked" for token in tokens):
        return UNKNOWN_CODING
    return Refusal(400, "a transfer coding follows chunked: the body length is unknown")


def foreign_protocol(chunk: bytes | None, url_tail: bytes) -> bool:
    """Whether the request line whose target ended with ``url_tail`` in ``chunk`` names
    RTSP or ICE, which llhttp takes as HTTP/1.0. A line split right after its target
    cannot be seen here and passes (llhttp still checks what follows)."""
    if chunk is None or (b" RTSP/" not in chunk and b" ICE/" not in chunk):
        return False
    return url_tail + b" RTSP/" in chunk or url_tail + b" ICE/" in chunk


class Target(NamedTuple):
    path: str  # origin form: "/path?query"
    authority: str | None  # from an absolute-form target; replaces Host


def split_target(raw: str) -> Target | Refusal:
    """The origin form as it is; the absolute form taken apart (RFC 9112 §3.2.2).
    Asterisk and authority forms pass unchanged for the handler to refuse."""
    if raw.startswith("/") or "://" not in raw[:16]:
        return Target(raw, None)
    scheme, _, rest = raw.partition("://")
    if scheme.lower() != "http":
        return ONLY_HTTP
    end = len(rest)
    for delimiter in "/?#":
        at = rest.find(delimiter)
        if 0 <= at < end:
            end = at
    authority, path = rest[:end], rest[end:]
    if not authority or _BAD_HOST.search(authority):
        return BAD_HOST
    if not path.startswith("/"):
        path = "/" + path
    return Target(path.partition("#")[0], authority)
