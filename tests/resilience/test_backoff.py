import random

import pytest

from resilience.backoff import JitteredBackoff, backoff_ceiling, full_jitter


@pytest.mark.parametrize(
    ("retry_number", "base", "cap", "ceiling"),
    [
        (1, 0.025, 0.25, 0.025),
        (2, 0.025, 0.25, 0.05),
        (3, 0.025, 0.25, 0.1),
        (4, 0.025, 0.25, 0.2),
        (5, 0.025, 0.25, 0.25),
        (60, 0.025, 0.25, 0.25),
        (5000, 1.0, 7.0, 7.0),  # must not overflow a float
        (3, 0.0, 1.0, 0.0),
    ],
)
def test_ceiling_doubles_then_caps(retry_number: int, base: float, cap: float, ceiling: float):
    assert backoff_ceiling(retry_number, base, cap) == pytest.approx(ceiling)


@pytest.mark.parametrize("retry_number", [1, 2, 3, 4, 8, 100])
def test_full_jitter_stays_within_ceiling_and_spreads(retry_number: int):
    rng = random.Random(7)
    ceiling = backoff_ceiling(retry_number, 0.025, 0.25)
    draws = [full_jitter(retry_number, 0.025, 0.25, rng) for _ in range(500)]
    assert all(0.0 <= d <= ceiling for d in draws)
    # Full jitter uses the whole interval, not just its top.
    assert min(draws) < ceiling * 0.1
    assert max(draws) > ceiling * 0.9


def test_full_jitter_is_reproducible_with_the_same_seed():
    a = [full_jitter(n, 0.1, 5.0, random.Random(42)) for n in range(1, 10)]
    b = [full_jitter(n, 0.1, 5.0, random.Random(42)) for n in range(1, 10)]
    assert a == b


@pytest.mark.parametrize(
    ("retry_number", "base", "cap"), [(0, 0.1, 1.0), (-1, 0.1, 1.0), (1, -0.1, 1.0), (1, 0.1, -1)]
)
def test_invalid_arguments_raise(retry_number: int, base: float, cap: float):
    with pytest.raises(ValueError):
        full_jitter(retry_number, base, cap, random.Random(0))


def test_jittered_backoff_grows_caps_and_never_hits_zero():
    backoff = JitteredBackoff(base=1.0, cap=30.0, rng=random.Random(3))
    expected_ceilings = [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    for n, ceiling in enumerate(expected_ceilings, start=1):
        delay = backoff.next()
        assert ceiling / 2 <= delay <= ceiling
        assert backoff.failures == n


def test_jittered_backoff_reset_starts_over():
    backoff = JitteredBackoff(base=0.5, cap=60.0, rng=random.Random(9))
    for _ in range(10):
        backoff.next()
    backoff.reset()
    assert backoff.failures == 0
    assert 0.25 <= backoff.next() <= 0.5


@pytest.mark.parametrize(("base", "cap"), [(0.0, 1.0), (2.0, 1.0), (-1.0, 1.0)])
def test_jittered_backoff_rejects_bad_bounds(base: float, cap: float):
    with pytest.raises(ValueError):
        JitteredBackoff(base, cap, random.Random(0))
