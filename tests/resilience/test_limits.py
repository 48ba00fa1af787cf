import pytest

from resilience.limits import ConcurrencyLimit, PendingLimit


@pytest.mark.parametrize("limit_type", [ConcurrencyLimit, PendingLimit])
@pytest.mark.parametrize("limit", [0, 1, 3])
def test_admits_up_to_the_limit_then_refuses(limit_type: type[ConcurrencyLimit], limit: int):
    gate = limit_type(limit)
    granted = [gate.try_acquire() for _ in range(limit + 2)]
    assert granted == [True] * limit + [False, False]
    assert gate.in_flight == limit
    assert gate.overflows == 2


def test_release_frees_a_slot():
    gate = ConcurrencyLimit(max_requests=2)
    assert gate.try_acquire() and gate.try_acquire()
    assert not gate.try_acquire()
    gate.release()
    assert gate.in_flight == 1
    assert gate.try_acquire()
    assert gate.in_flight == 2


def test_release_without_acquire_is_a_bug():
    gate = PendingLimit(max_pending_requests=1)
    with pytest.raises(RuntimeError):
        gate.release()


def test_defaults_follow_envoy():
    assert ConcurrencyLimit().limit == 1024
    assert PendingLimit().limit == 1024


def test_negative_limit_is_rejected():
    with pytest.raises(ValueError):
        ConcurrencyLimit(-1)
