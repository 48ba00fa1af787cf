import pytest

from resilience.budget import RetryBudget
from resilience.clock import FakeClock


def drain(budget: RetryBudget, limit: int = 10_000) -> int:
    granted = 0
    while granted < limit and budget.try_withdraw():
        granted += 1
    return granted


@pytest.mark.parametrize(
    ("ratio", "min_per_s", "window", "requests", "allowed"),
    [
        (0.2, 10, 10.0, 100, 120),  # 10/s * 10s reserve + 20% of 100
        (0.2, 10, 10.0, 0, 100),
        (0.2, 0, 10.0, 100, 20),
        (0.1, 0, 10.0, 30, 3),  # 0.1 * 30 is not exactly 3.0 in floats
        (0.0, 0, 10.0, 1000, 0),
        (0.5, 1, 4.0, 7, 7),  # 4 + 3.5 -> 7 whole retries
    ],
)
def test_allowed_retries_in_a_window(
    ratio: float, min_per_s: float, window: float, requests: int, allowed: int
):
    budget = RetryBudget(FakeClock(), ratio=ratio, min_retries_per_second=min_per_s, window=window)
    for _ in range(requests):
        budget.record_request()
    assert budget.remaining() == allowed
    assert drain(budget) == allowed
    assert budget.remaining() == 0
    assert not budget.try_withdraw()


def test_new_requests_refill_an_empty_budget():
    budget = RetryBudget(FakeClock(), ratio=0.2, min_retries_per_second=0)
    for _ in range(10):
        budget.record_request()
    assert drain(budget) == 2
    for _ in range(5):
        budget.record_request()
    assert drain(budget) == 1


def test_deposits_expire_after_the_window():
    clock = FakeClock(start=1000.0)
    budget = RetryBudget(clock, ratio=0.2, min_retries_per_second=0, window=10.0)
    for _ in range(100):
        budget.record_request()
    clock.advance(9.0)
    assert budget.remaining() == 20
    clock.advance(1.0)
    assert budget.remaining() == 0
    assert not budget.try_withdraw()


def test_withdrawals_expire_too_so_the_budget_recovers():
    clock = FakeClock(start=1000.0)
    budget = RetryBudget(clock, ratio=0.2, min_retries_per_second=10, window=10.0)
    assert drain(budget) == 100
    clock.advance(5.0)
    assert budget.remaining() == 0
    clock.advance(5.0)
    assert budget.remaining() == 100


def test_sliding_window_keeps_recent_deposits_only():
    clock = FakeClock(start=1000.0)
    budget = RetryBudget(clock, ratio=1.0, min_retries_per_second=0, window=10.0)
    for _ in range(6):  # one request per second at t = 1000..1005
        budget.record_request()
        clock.advance(1.0)
    assert budget.remaining() == 6  # t = 1006
    clock.advance(4.0)  # t = 1010: the request from t = 1000 is a whole window old
    assert budget.remaining() == 5
    clock.advance(3.0)
    assert budget.remaining() == 2


@pytest.mark.parametrize(
    "kwargs",
    [{"ratio": -0.1}, {"min_retries_per_second": -1}, {"window": 0.0}],
)
def test_invalid_settings_are_rejected(kwargs: dict[str, float]):
    with pytest.raises(ValueError):
        RetryBudget(FakeClock(), **kwargs)
