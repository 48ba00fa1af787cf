"""The one exception discovery code raises for a bad or missing answer from a backend.

Parsers raise ``DiscoveryError`` for malformed input and never anything else; the Consul and
DNS clients turn every transport failure (refused connection, timeout, HTTP error status,
DNS error code) into a ``DiscoveryError`` too. Sources catch it, keep the last good snapshot
and retry. Messages are meant for logs: they name what was wrong and never carry secrets
(an ACL token is scrubbed before a message is built into an exception).
"""

from __future__ import annotations


class DiscoveryError(Exception):
    """A source could not produce a snapshot: unreachable backend or malformed answer."""


def scrub(message: str, secret: str | None) -> str:
    """``message`` with every occurrence of ``secret`` masked."""
    if not secret:
        return message
    return message.replace(secret, "<redacted>")
