"""What each ``x-pilotfish-error`` reason and access-log response flag means, and what to check
first: one table, printed by ``pilotfish explain`` and rendered into docs/troubleshooting.md.

Status and flag of a reason are the ones the code answers with (``ProxyError`` subclasses, the
listener's own refusals, ``FLAG_OF_ERROR`` of the access log); tests hold this table equal to
them and the docs page equal to ``markdown()``, so a reason or flag added to the code without
a row here fails the suite. Pure data and string formatting: importing it costs nothing.
"""

from __future__ import annotations

from typing import NamedTuple


class Reason(NamedTuple):
    name: str  # as sent in x-pilotfish-error
    status: int | None  # the sidecar's answer; None when it never answers (the client left)
    flag: str  # the response flag logged with it, "" for none
    means: str
    check_first: str


class Flag(NamedTuple):
    name: str
    means: str
    check_first: str


REASONS = (
    Reason("bad_request", 400, "NR",
          "The request could not be proxied as sent: malformed HTTP/1.1 (framing, no `Host` "
          "or two, a transfer coding after `chunked`, `Transfer-Encoding` in HTTP/1.0), a "
          "`CONNECT`, `*` or `https://` target, or a body whose framing broke while it was "
          "read. Also `414` and `431` when a limit of the head was crossed. Nothing of it "
          "reached an upstream, and no endpoint is blamed.",
          "The client's request line and head. `pilotfish_downstream_refused_total` by "
          "`code` counts the requests refused before any handler saw them (they have no "
          "access-log line)."),
    Reason("no_route", 404, "NR",
          "The egress listener knows no upstream for the request's `Host`.",
          "The `Host` the app sends against `upstreams[].name` and `hosts` in `/config`."),
    Reason("request_timeout", 408, "SI",
          "The client stopped sending: no byte of the request body for "
          "`listeners.timeouts.request_body_idle`, or a head not complete within "
          "`request_headers` of its first byte (both 60 s). The connection is closed; the "
          "endpoint is not blamed.",
          "The client and anything between it and the sidecar: a stalled upload, or a "
          "`Content-Length` larger than the body actually sent."),
    Reason("internal", 500, "",
          "A fault in Pilotfish itself. It is logged with its traceback, never retried and "
          "never counted against an endpoint; the connection is closed.",
          "The sidecar's log: the traceback logged at the same moment says where. It is a "
          "bug worth reporting with that traceback."),
    Reason("not_implemented", 501, "",
          "The request's `Transfer-Encoding` names a coding other than one final `chunked` "
          "(`gzip, chunked`, or `chunked` twice): passing the body on without that coding "
          "would corrupt it. Nothing reached an upstream.",
          "The client: send the body with `Content-Length`, or `chunked` alone (a content "
          "coding belongs in `Content-Encoding`)."),
    Reason("http_version_not_supported", 505, "",
          "The request line names `HTTP/2.0` or `HTTP/0.9`; the listeners speak HTTP/1.0 and "
          "HTTP/1.1. Nothing reached an upstream.",
          "The client: an HTTP/2 client must not send HTTP/2 over an HTTP/1.1 connection "
          "without an upgrade (cleartext `h2c` upgrades are served as HTTP/1.1)."),
    Reason("connect_failure", 502, "UF",
          "No connection to the endpoint: refused, unreachable, or not made within "
          "`timeouts.connect`. Safe to retry: the endpoint never saw the request.",
          "`/clusters`: is the endpoint's address right, and is something listening there? "
          "`pilotfish_upstream_connect_failures_total` by endpoint shows which one."),
    Reason("upstream_reset", 502, "UR",
          "The endpoint closed the connection before a complete answer, answered something "
          "that is not HTTP (a status outside 100..599 included), or its body stopped "
          "arriving for `timeouts.stream_idle`.",
          "The upstream's own log at that time (a crash, a restart); an upstream whose "
          "keep-alive timeout is shorter than `timeouts.idle` closes pooled connections "
          "under the sidecar."),
    Reason("no_healthy_upstream", 503, "UH",
          "No endpoint could be picked: none discovered, or every one ejected, unhealthy or "
          "refused by its breaker (and the cluster was not in panic).",
          "`/clusters`: does `discovery` say ready with endpoints, and what is each "
          "endpoint's state? `/ready` says which upstream still waits for endpoints."),
    Reason("overflow", 503, "UO",
          "`circuit_breakers.max_requests` requests were already in flight to the cluster.",
          "`pilotfish_upstream_requests_in_flight`: a slow upstream piles requests up; "
          "raise `max_requests` only if the upstream can take them."),
    Reason("breaker_open", 503, "UO",
          "The endpoints picked kept refusing at their circuit breakers (open, or half open "
          "with the one trial request already out).",
          "`/clusters` breaker states and `pilotfish_upstream_breaker_rejections_total`: "
          "the upstream failed `circuit_breakers.endpoint.fail_max` times in a row."),
    Reason("upstream_timeout", 504, "UT",
          "An attempt's `retries.per_try_timeout` expired before the response headers came.",
          "The upstream's latency (`pilotfish_upstream_attempt_duration_seconds`) against "
          "`per_try_timeout`; `pilotfish_upstream_timeouts_total` by endpoint."),
    Reason("deadline_exceeded", 504, "UT",
          "`timeouts.total` expired, counted over every attempt and backoff of the request.",
          "`timeouts.total` against `per_try_timeout` times the attempts plus backoff, and the "
          "upstream's latency."),
    Reason("downstream_disconnect", None, "DC",
          "Never sent: the client went away before its answer was complete. It is the "
          "`pilotfish.error` of the request's span.",
          "The client's own timeout: a client that gives up before `timeouts.total` leaves "
          "the sidecar working for nobody."),
)  # fmt: skip

FLAGS = (
    Flag("UH", "No healthy upstream: no endpoint was available.",
          "As for `no_healthy_upstream`: `/clusters`."),
    Flag("UF", "Upstream connection failure.",
          "As for `connect_failure`: the endpoint's address and listener."),
    Flag("UT", "Upstream timeout: the per-try timeout or the total deadline.",
          "The `x-pilotfish-error` reason (`upstream_timeout` or `deadline_exceeded`), then "
          "the upstream's latency."),
    Flag("UO",
          "Upstream overflow: `max_requests` in flight, or the endpoint's breaker refused.",
          "`overflow` or `breaker_open`: in-flight requests, or breaker states in `/clusters`."),
    Flag("URX",
          "Retries ran out (`retries.attempts`) or the retry budget refused one; the last "
          "failure was returned. Comes with the flag of that failure.",
          "The other flag first; then `pilotfish_upstream_retry_budget_exhausted_total`: a "
          "budget that runs dry means many requests are failing at once."),
    Flag("UR", "The upstream reset the connection before answering.",
          "As for `upstream_reset`: the upstream's log."),
    Flag("UPE",
          "Upstream protocol error: the answer's body broke off after its status line had "
          "gone out, so the sidecar cut the client's connection.",
          "The upstream's log: it died or closed mid-body."),
    Flag("DC",
          "Downstream disconnect: the client went away before the answer was complete.",
          "The client's timeout, as for `downstream_disconnect`."),
    Flag("SI", "Stream idle: the client stopped sending the request body.",
          "As for `request_timeout`: the client."),
    Flag("NR",
          "No route: no upstream for the `Host` (`404`), or a request target the sidecar "
          "refuses (`400`).",
          "`no_route` or `bad_request`: the `Host` header, or the client's request line."),
)  # fmt: skip


def explain(name: str) -> Reason | Flag | None:
    """The entry of a reason (case as sent) or a flag (any case), if there is one."""
    for entry in REASONS:
        if entry.name == name:
            return entry
    upper = name.upper()
    return next((entry for entry in FLAGS if entry.name == upper), None)


def describe(entry: Reason | Flag) -> str:
    """``entry`` as ``pilotfish explain`` prints it."""
    if isinstance(entry, Reason):
        answer = "no answer" if entry.status is None else f"answered {entry.status}"
        flag = f", response flag {entry.flag}" if entry.flag else ""
        title = f"x-pilotfish-error: {entry.name} ({answer}{flag})"
    else:
        title = f"response flag {entry.name}"
    return f"{title}\nmeans: {entry.means}\ncheck first: {entry.check_first}\n"


def markdown() -> str:
    """The two tables of docs/troubleshooting.md."""
    lines = [
        "| `x-pilotfish-error` | status | flag | what it means | check first |",
        "| --- | --- | --- | --- | --- |",
    ]
    for e in REASONS:
        status = "none" if e.status is None else str(e.status)
        flag = f"`{e.flag}`" if e.flag else ""
        lines.append(f"| `{e.name}` | {status} | {flag} | {e.means} | {e.check_first} |")
    lines += ["", "| flag | what it means | check first |", "| --- | --- | --- |"]
    lines += [f"| `{e.name}` | {e.means} | {e.check_first} |" for e in FLAGS]
    return "\n".join(lines) + "\n"
