import random

import pytest

from resilience.health import HealthState, HealthTable, Transition, jittered_interval

T, F = True, False


@pytest.mark.parametrize(
    ("initial", "probes", "transitions", "healthy_after"),
    [
        (T, [F, F], [None, None], T),
        (T, [F, F, F], [None, None, Transition(False)], F),
        (T, [F, F, T, F, F], [None] * 5, T),  # a pass breaks the run of failures
        (T, [F, F, F, F, F], [None, None, Transition(False), None, None], F),
        (F, [T], [None], F),
        (F, [T, T], [None, Transition(True)], T),
        (F, [T, F, T], [None, None, None], F),
        (T, [F, F, F, T, T], [None, None, Transition(False), None, Transition(True)], T),
        (T, [T] * 5, [None] * 5, T),
    ],
)
def test_thresholds(
    initial: bool, probes: list[bool], transitions: list[Transition | None], healthy_after: bool
):
    state = HealthState(healthy_threshold=2, unhealthy_threshold=3, initial_healthy=initial)
    assert [state.record(ok) for ok in probes] == transitions
    assert state.healthy is healthy_after


def test_thresholds_of_one_flip_on_every_change():
    state = HealthState(healthy_threshold=1, unhealthy_threshold=1)
    assert [state.record(ok) for ok in [F, F, T, F]] == [
        Transition(False),
        None,
        Transition(True),
        Transition(False),
    ]


@pytest.mark.parametrize(("healthy", "unhealthy"), [(0, 3), (2, 0)])
def test_invalid_thresholds_are_rejected(healthy: int, unhealthy: int):
    with pytest.raises(ValueError):
        HealthState(healthy, unhealthy)
    with pytest.raises(ValueError):
        HealthTable(healthy, unhealthy)


def test_table_tracks_members_independently():
    table = HealthTable(healthy_threshold=2, unhealthy_threshold=2)
    table.set_members(["a", "b"])
    assert table.record("a", False) is None
    assert table.record("a", False) == Transition(False)
    assert table.record("b", False) is None
    assert not table.is_healthy("a")
    assert table.is_healthy("b")
    assert table.snapshot("a") == {
        "healthy": False,
        "consecutive_passes": 0,
        "consecutive_failures": 2,
    }


def test_table_ignores_non_members_and_forgets_leavers():
    table = HealthTable(healthy_threshold=2, unhealthy_threshold=1, initial_healthy=False)
    table.set_members(["a", "b"])
    assert table.record("zzz", True) is None
    assert table.snapshot("zzz") is None
    table.record("a", True)
    assert table.record("a", True) == Transition(True)
    table.record("b", True)
    table.set_members(["a", "c"])  # b leaves mid-way, c joins
    assert table.snapshot("b") is None
    assert table.is_healthy("a")
    assert not table.is_healthy("c")
    table.set_members(["a", "b", "c"])  # b returns from scratch
    assert table.snapshot("b") == {
        "healthy": False,
        "consecutive_passes": 0,
        "consecutive_failures": 0,
    }


@pytest.mark.parametrize(("interval", "fraction"), [(10.0, 0.0), (10.0, 0.1), (5.0, 1.0)])
def test_jittered_interval_only_lengthens(interval: float, fraction: float):
    rng = random.Random(4)
    draws = [jittered_interval(interval, fraction, rng) for _ in range(300)]
    assert all(interval <= d <= interval * (1 + fraction) for d in draws)
    if fraction:
        assert max(draws) - min(draws) > interval * fraction * 0.8


@pytest.mark.parametrize(("interval", "fraction"), [(-1.0, 0.1), (1.0, -0.1), (1.0, 1.5)])
def test_jittered_interval_rejects_bad_arguments(interval: float, fraction: float):
    with pytest.raises(ValueError):
        jittered_interval(interval, fraction, random.Random(0))
