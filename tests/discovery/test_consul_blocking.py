"""Blocking-query rules: next index (reset, sanity check) and the burst-2 token bucket."""

from __future__ import annotations

import itertools

import pytest

from discovery.consul_blocking import TokenBucket, next_index
from resilience.clock import FakeClock


@pytest.mark.parametrize(
    ("previous", "returned", "expected"),
    [
        (0, 15, 15),  # first answer
        (15, 15, 15),  # wait expired, nothing changed
        (15, 20, 20),  # a change
        (15, 5, 0),  # went backwards: restart the loop with a non-blocking read
        (0, 5, 5),  # ...whose answer is then blocked on
        (0, 0, 1),  # buggy 0 after a reset: block on 1, never on 0 again
        (1, 0, 1),  # buggy 0 again: still 1, not a reset
        (15, 0, 0),  # 0 after a real index is a backwards move
        (0, -3, 1),  # nonsense below 0 is sanitised as well
    ],
)
def test_next_index(previous: int, returned: int, expected: int) -> None:
    assert next_index(previous, returned) == expected


def test_answers_never_make_the_loop_send_index_zero_twice_in_a_row() -> None:
    sent = [0]
    for returned in [0, 0, 7, 3, 0, 0, 9, 2, 2, 0]:
        sent.append(next_index(sent[-1], returned))
    assert all(not (a == 0 and b == 0) for a, b in itertools.pairwise(sent))


def test_bucket_allows_a_burst_of_two_then_one_per_interval() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2, 15.0, clock.now())
    assert [bucket.take(clock.now()) for _ in range(4)] == [0.0, 0.0, 15.0, 30.0]


def test_bucket_refills_while_idle_but_never_beyond_its_capacity() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2, 10.0, clock.now())
    bucket.take(clock.now())
    bucket.take(clock.now())
    clock.advance(5.0)
    assert bucket.take(clock.now()) == pytest.approx(5.0)
    clock.advance(1000.0)
    assert [bucket.take(clock.now()) for _ in range(3)] == [0.0, 0.0, pytest.approx(10.0)]


def test_quiet_loop_is_never_delayed() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2, 15.0, clock.now())
    for _ in range(10):
        clock.advance(55.0)  # a blocking read that waited its full time
        assert bucket.take(clock.now()) == 0.0


def test_zero_interval_disables_the_limit() -> None:
    bucket = TokenBucket(2, 0.0, 0.0)
    assert {bucket.take(0.0) for _ in range(10)} == {0.0}


@pytest.mark.parametrize(("capacity", "interval"), [(0, 1.0), (2, -1.0)])
def test_bucket_rejects_nonsense(capacity: int, interval: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(capacity, interval, 0.0)
