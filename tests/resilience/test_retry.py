import random

import pytest

from resilience.outcome import Outcome, classify_status
from resilience.retry import GiveUp, RetryAfter, RetryPolicy, parse_retry_on

ALL = frozenset({"connect-failure", "reset", "timeout", "gateway-error", "5xx"})


def decide(policy: RetryPolicy, outcome: Outcome, status: int | None = None, **overrides: object):
    args: dict[str, object] = {
        "outcome": outcome,
        "status": status,
        "method": "GET",
        "retries_done": 0,
        "replayable": True,
        "remaining": 10.0,
        "rng": random.Random(1),
    }
    args.update(overrides)
    return policy.decide(**args)  # type: ignore[arg-type]


def response(status: int) -> tuple[Outcome, int]:
    return classify_status(status), status


# (retry_on, outcome, status, retried?)
CONDITIONS = [
    ({"connect-failure"}, Outcome.CONNECT_FAILURE, None, True),
    ({"connect-failure"}, Outcome.RESET, None, False),
    ({"reset"}, Outcome.RESET, None, True),
    ({"reset"}, Outcome.CONNECT_FAILURE, None, False),
    ({"timeout"}, Outcome.TIMEOUT, None, True),
    ({"reset"}, Outcome.TIMEOUT, None, False),
    ({"gateway-error"}, *response(502), True),
    ({"gateway-error"}, *response(503), True),
    ({"gateway-error"}, *response(504), True),
    ({"gateway-error"}, *response(500), False),
    ({"gateway-error"}, Outcome.CONNECT_FAILURE, None, False),
    ({"5xx"}, *response(500), True),
    ({"5xx"}, *response(503), True),
    ({"5xx"}, *response(599), True),
    ({"5xx"}, Outcome.CONNECT_FAILURE, None, True),
    ({"5xx"}, Outcome.RESET, None, True),
    ({"5xx"}, Outcome.TIMEOUT, None, True),
    ({"gateway-error"}, Outcome.TIMEOUT, None, True),
    ({"5xx"}, *response(404), False),
    ({"retriable-status-codes"}, *response(409), True),
    ({"retriable-status-codes"}, *response(500), True),
    ({"retriable-status-codes"}, *response(501), False),
    ({"retriable-status-codes"}, *response(200), False),
    (ALL, *response(409), False),  # codes only count with retriable-status-codes on
    (ALL, *response(200), False),
    (ALL, Outcome.LOCAL_REJECTION, None, False),
    (set(), Outcome.CONNECT_FAILURE, None, False),
]


@pytest.mark.parametrize(("retry_on", "outcome", "status", "retried"), CONDITIONS)
def test_retry_on_conditions(
    retry_on: set[str], outcome: Outcome, status: int | None, retried: bool
):
    policy = RetryPolicy(retry_on=frozenset(retry_on), retriable_status_codes=frozenset({409, 500}))
    decision = decide(policy, outcome, status)
    if retried:
        assert isinstance(decision, RetryAfter)
    else:
        assert decision == GiveUp("not_retriable")


@pytest.mark.parametrize(
    ("outcome", "status", "method", "replayable", "expected"),
    [
        (Outcome.RESET, None, "POST", True, "method_not_idempotent"),
        (Outcome.GATEWAY_ERROR, 503, "PATCH", True, "method_not_idempotent"),
        (Outcome.TIMEOUT, None, "POST", True, "method_not_idempotent"),  # gateway-error
        (Outcome.TIMEOUT, None, "GET", True, None),  # a per-try timeout is a gateway error
        (Outcome.CONNECT_FAILURE, None, "POST", True, None),  # nothing was sent
        (Outcome.CONNECT_FAILURE, None, "POST", False, "body_not_replayable"),
        (Outcome.CONNECT_FAILURE, None, "GET", False, "body_not_replayable"),
        (Outcome.RESET, None, "PUT", False, "body_not_replayable"),
        (Outcome.RESET, None, "PUT", True, None),
        (Outcome.GATEWAY_ERROR, 502, "DELETE", True, None),
        (Outcome.GATEWAY_ERROR, 504, "HEAD", True, None),
    ],
)
def test_method_and_body_safety(
    outcome: Outcome, status: int | None, method: str, replayable: bool, expected: str | None
):
    decision = decide(RetryPolicy(), outcome, status, method=method, replayable=replayable)
    if expected is None:
        assert isinstance(decision, RetryAfter)
    else:
        assert decision == GiveUp(expected)


@pytest.mark.parametrize(
    ("attempts", "retries_done", "retried"),
    [(2, 0, True), (2, 1, True), (2, 2, False), (2, 5, False), (0, 0, False)],
)
def test_attempts(attempts: int, retries_done: int, retried: bool):
    decision = decide(RetryPolicy(attempts=attempts), Outcome.RESET, retries_done=retries_done)
    if retried:
        assert isinstance(decision, RetryAfter)
    else:
        assert decision == GiveUp("attempts_exhausted")


@pytest.mark.parametrize(
    ("retries_done", "ceiling"), [(0, 0.025), (1, 0.05), (2, 0.1), (3, 0.2), (4, 0.25), (9, 0.25)]
)
def test_backoff_delay_is_full_jitter_under_the_ceiling(retries_done: int, ceiling: float):
    policy = RetryPolicy(attempts=10)
    rng = random.Random(11)
    delays = []
    for _ in range(200):
        decision = decide(policy, Outcome.RESET, retries_done=retries_done, rng=rng)
        assert isinstance(decision, RetryAfter)
        delays.append(decision.delay)
    assert all(0.0 <= d <= ceiling for d in delays)
    assert max(delays) > ceiling * 0.8


def test_delay_that_does_not_fit_the_deadline_gives_up():
    policy = RetryPolicy(backoff_base=1.0, backoff_max=1.0)
    rng_seed = 5
    delay = random.Random(rng_seed).uniform(0.0, 1.0)
    fits = decide(policy, Outcome.RESET, remaining=delay + 0.01, rng=random.Random(rng_seed))
    assert fits == RetryAfter(delay)
    too_late = decide(policy, Outcome.RESET, remaining=delay, rng=random.Random(rng_seed))
    assert too_late == GiveUp("deadline")
    assert decide(policy, Outcome.RESET, remaining=0.0) == GiveUp("deadline")


def test_defaults_follow_envoy():
    policy = RetryPolicy()
    assert policy.attempts == 2
    assert policy.retry_on == {
        "connect-failure",
        "reset",
        "gateway-error",
        "retriable-status-codes",
    }
    assert policy.idempotent_methods == {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"}
    assert (policy.backoff_base, policy.backoff_max) == (0.025, 0.25)


@pytest.mark.parametrize(
    ("names", "parsed"),
    [
        ("5xx,reset", {"5xx", "reset"}),
        (" gateway-error , connect-failure ,", {"gateway-error", "connect-failure"}),
        (["timeout", "retriable-status-codes"], {"timeout", "retriable-status-codes"}),
        ("", set()),
    ],
)
def test_parse_retry_on(names: str | list[str], parsed: set[str]):
    assert parse_retry_on(names) == parsed


@pytest.mark.parametrize("names", ["5xx,refused-stream", ["retriable-4xx"], "5XX"])
def test_parse_retry_on_rejects_unknown_names_and_lists_valid_ones(names: str | list[str]):
    with pytest.raises(ValueError, match=r"valid: .*connect-failure"):
        parse_retry_on(names)


def test_policy_rejects_unknown_retry_on():
    with pytest.raises(ValueError):
        RetryPolicy(retry_on=frozenset({"5xx", "bogus"}))
