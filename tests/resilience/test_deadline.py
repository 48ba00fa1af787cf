import pytest

from resilience.clock import FakeClock
from resilience.deadline import Deadline


@pytest.mark.parametrize(
    ("total", "elapsed", "remaining", "expired"),
    [
        (5.0, 0.0, 5.0, False),
        (5.0, 1.5, 3.5, False),
        (5.0, 5.0, 0.0, True),
        (5.0, 9.0, 0.0, True),
        (0.0, 0.0, 0.0, True),
    ],
)
def test_remaining_and_expired(total: float, elapsed: float, remaining: float, expired: bool):
    clock = FakeClock()
    deadline = Deadline(clock, total)
    clock.advance(elapsed)
    assert deadline.remaining() == pytest.approx(remaining)
    assert deadline.expired is expired


@pytest.mark.parametrize(
    ("total", "elapsed", "per_try", "budget"),
    [
        (5.0, 0.0, 1.0, 1.0),  # per-try timeout is the tighter bound
        (5.0, 4.5, 1.0, 0.5),  # the deadline cuts the last try short
        (5.0, 2.0, None, 3.0),  # no per-try timeout: whatever is left
        (5.0, 6.0, 1.0, 0.0),
    ],
)
def test_budget_for_try(total: float, elapsed: float, per_try: float | None, budget: float):
    clock = FakeClock()
    deadline = Deadline(clock, total)
    clock.advance(elapsed)
    assert deadline.budget_for_try(per_try) == pytest.approx(budget)


def test_negative_values_are_rejected():
    with pytest.raises(ValueError):
        Deadline(FakeClock(), -1.0)
    with pytest.raises(ValueError):
        Deadline(FakeClock(), 1.0).budget_for_try(-0.5)
