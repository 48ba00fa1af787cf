"""Parsing ``host:port`` strings as Consul and DNS settings write them.

Accepted: ``host:port``, ``host``, ``[v6]:port``, ``[v6]`` (a missing port takes the caller's
default). A bare IPv6 literal without brackets is rejected because its last group would read
as a port. Invariant: the returned host never carries brackets and the port is 1..65535.
"""

from __future__ import annotations


def split_host_port(text: str, default_port: int) -> tuple[str, int]:
    """``(host, port)`` of ``text``; raises ``ValueError`` naming the problem."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not host:
            raise ValueError(f"{text!r}: unterminated or empty [IPv6] literal")
        if rest and not rest.startswith(":"):
            raise ValueError(f"{text!r}: expected ':port' after ']'")
        port_text = rest[1:] if rest else ""
    else:
        if text.count(":") > 1:
            raise ValueError(f"{text!r}: write IPv6 addresses in brackets, e.g. [::1]:8500")
        host, _, port_text = text.partition(":")
        if not host:
            raise ValueError(f"{text!r}: empty host")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{text!r}: port must be 1..65535")
    return host, int(port_text)


def join_host_port(host: str, port: int) -> str:
    """Inverse of ``split_host_port``: brackets an IPv6 host."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
