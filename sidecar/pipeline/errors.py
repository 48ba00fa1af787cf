"""Failures the sidecar answers itself, each with its status, reason and response flag.

The body names the cause and ``x-pilotfish-error`` carries the reason, so a caller can tell
a sidecar decision from an upstream answer.
"""

from __future__ import annotations

from resilience.outcome import Outcome


class ProxyError(Exception):
    status = 502
    reason = "upstream_error"
    flag = ""
    outcome = Outcome.LOCAL_REJECTION
    closes_connection = False
    answered = True  # False: nobody is left to answer (the status is only nginx's log code)

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.reason)
        self.detail = detail


class NoHealthyUpstream(ProxyError):
    status, reason, flag = 503, "no_healthy_upstream", "UH"


class Overflow(ProxyError):
    status, reason, flag = 503, "overflow", "UO"


class ConnectFailure(ProxyError):
    status, reason, flag, outcome = 502, "connect_failure", "UF", Outcome.CONNECT_FAILURE


class UpstreamReset(ProxyError):
    status, reason, flag, outcome = 502, "upstream_reset", "UR", Outcome.RESET


class UpstreamTimeout(ProxyError):
    status, reason, flag, outcome = 504, "upstream_timeout", "UT", Outcome.TIMEOUT


class DeadlineExceeded(ProxyError):
    status, reason, flag, outcome = 504, "deadline_exceeded", "UT", Outcome.TIMEOUT


class RequestTimeout(ProxyError):
    """The client stopped sending the request body the sidecar was reading."""

    status, reason, flag = 408, "request_timeout", "SI"
    closes_connection = True  # the rest of the body may still come: the stream is unusable


class DownstreamDisconnect(ProxyError):
    """The client went away while its request body was being read (nginx's 499).

    Nobody is left to answer; the attempt it cuts short is ``CANCELLED``, never charged
    to the endpoint."""

    status, reason, flag, outcome = 499, "downstream_disconnect", "DC", Outcome.CANCELLED
    closes_connection = True
    answered = False


class InternalError(ProxyError):
    """A fault in Pilotfish itself (logged with its traceback where it happened).

    Never counted against an endpoint and never retried: the same request would meet it
    again. The connection is closed, since what state it was left in is unknown.
    """

    status, reason = 500, "internal"
    closes_connection = True


class NoRoute(ProxyError):
    status, reason, flag = 404, "no_route", "NR"


class BadRequest(ProxyError):
    status, reason, flag = 400, "bad_request", "NR"
