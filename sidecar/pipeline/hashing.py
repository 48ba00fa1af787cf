"""Where a ring-hash key comes from: a header, cookie, query parameter, source IP or path.

Compiled once per cluster into a plain function; no key (e.g. the header is absent) gives
``None`` and the balancer falls back to round robin.
"""

from __future__ import annotations

from collections.abc import Callable
from http.cookies import SimpleCookie

from sidecar.config.policies import HashOn
from sidecar.listener.request import DownstreamRequest

KeyOf = Callable[[DownstreamRequest, str], str | None]


def key_function(hash_on: HashOn | None) -> KeyOf | None:
    if hash_on is None:
        return None
    name = hash_on.name
    if hash_on.source == "header":
        return lambda request, client_ip: request.fields.get(name)
    if hash_on.source == "cookie":
        return lambda request, client_ip: _cookie(request, name)
    if hash_on.source == "query":
        return lambda request, client_ip: request.query.get(name)
    if hash_on.source == "source_ip":
        return lambda request, client_ip: client_ip or None
    return lambda request, client_ip: request.path


def _cookie(request: DownstreamRequest, name: str) -> str | None:
    raw = request.fields.get("Cookie")
    if not raw or name not in raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # a malformed Cookie header is the client's problem: no key
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None
