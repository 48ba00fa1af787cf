"""What an admin route answers: ``AdminReply``, and the helpers that make one.

Shared by the admin listener's routes and the guard of the routes that change state.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from sidecar.listener.request import DownstreamRequest

TEXT = "text/plain; charset=utf-8"
JSON = "application/json; charset=utf-8"
HTML = "text/html; charset=utf-8"
ALLOWED_METHODS = ("GET", "HEAD")


class AdminReply(NamedTuple):
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


AdminRoute = Callable[[DownstreamRequest], Awaitable[AdminReply]]


class Post(NamedTuple):
    """A route answering POST (and only POST): one that changes something."""

    route: AdminRoute


def text_reply(text: str, status: int = 200) -> AdminReply:
    return AdminReply(status, TEXT, text.encode())


def json_reply(value: object, status: int = 200) -> AdminReply:
    return AdminReply(status, JSON, json.dumps(value).encode())
