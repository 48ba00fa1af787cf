import pytest

from resilience.breaker import EndpointBreaker, Permit
from resilience.clock import FakeClock
from resilience.outcome import Outcome

FAILURES = [o for o in Outcome if o.counts_against_endpoint]


def make(clock: FakeClock, **kwargs: float) -> EndpointBreaker:
    return EndpointBreaker(clock, fail_max=5, reset_timeout=30.0, **kwargs)  # type: ignore[arg-type]


def settle(breaker: EndpointBreaker, outcome: Outcome) -> None:
    permit = breaker.try_acquire()
    assert permit is not None
    permit.record(outcome)


def trip(breaker: EndpointBreaker) -> None:
    for _ in range(5):
        settle(breaker, Outcome.GATEWAY_ERROR)
    assert breaker.state == "open"


@pytest.mark.parametrize("failure", FAILURES)
def test_opens_after_fail_max_consecutive_failures(failure: Outcome):
    breaker = make(FakeClock())
    for _ in range(4):
        settle(breaker, failure)
        assert breaker.state == "closed"
    settle(breaker, failure)
    assert breaker.state == "open"
    assert not breaker.admits()
    assert breaker.try_acquire() is None


@pytest.mark.parametrize(
    ("outcomes", "state"),
    [
        ([Outcome.RESET] * 4 + [Outcome.SUCCESS] + [Outcome.RESET] * 4, "closed"),
        ([Outcome.RESET] * 4 + [Outcome.LOCAL_REJECTION] * 3 + [Outcome.RESET], "open"),
        ([Outcome.LOCAL_REJECTION] * 20, "closed"),
        ([Outcome.SUCCESS] * 20, "closed"),
    ],
)
def test_only_consecutive_endpoint_failures_count(outcomes: list[Outcome], state: str):
    breaker = make(FakeClock())
    for outcome in outcomes:
        settle(breaker, outcome)
    assert breaker.state == state


def test_released_permits_do_not_count():
    breaker = make(FakeClock())
    for _ in range(10):
        permit = breaker.try_acquire()
        assert permit is not None
        permit.release()
    assert breaker.state == "closed"
    assert breaker.consecutive_failures == 0


def test_half_open_after_reset_timeout_admits_exactly_one_trial():
    clock = FakeClock()
    breaker = make(clock)
    trip(breaker)
    clock.advance(29.9)
    assert breaker.state == "open"
    assert not breaker.admits()
    clock.advance(0.1)
    assert breaker.state == "half_open"
    assert breaker.admits()
    permits = [breaker.try_acquire() for _ in range(5)]
    granted = [p for p in permits if p is not None]
    assert len(granted) == 1
    assert granted[0].trial
    assert not breaker.admits()


@pytest.mark.parametrize(
    ("trial_outcome", "state_after"),
    [(Outcome.SUCCESS, "closed")] + [(f, "open") for f in FAILURES],
)
def test_trial_outcome_decides_the_state(trial_outcome: Outcome, state_after: str):
    clock = FakeClock()
    breaker = make(clock)
    trip(breaker)
    clock.advance(30.0)
    trial = breaker.try_acquire()
    assert trial is not None
    trial.record(trial_outcome)
    assert breaker.state == state_after
    assert breaker.admits() is (state_after == "closed")


def test_reopened_circuit_waits_a_full_reset_timeout_again():
    clock = FakeClock()
    breaker = make(clock)
    trip(breaker)
    clock.advance(30.0)
    clock.advance(12.0)  # the trial starts late; the new timeout runs from its failure
    trial = breaker.try_acquire()
    assert trial is not None
    trial.record(Outcome.TIMEOUT)
    clock.advance(29.0)
    assert breaker.state == "open"
    clock.advance(1.0)
    assert breaker.state == "half_open"


@pytest.mark.parametrize("settle_how", ["release", "local_rejection"])
def test_returned_trial_permit_lets_another_trial_through(settle_how: str):
    clock = FakeClock()
    breaker = make(clock)
    trip(breaker)
    clock.advance(30.0)
    trial = breaker.try_acquire()
    assert trial is not None
    assert breaker.try_acquire() is None
    if settle_how == "release":
        trial.release()
    else:
        trial.record(Outcome.LOCAL_REJECTION)
    assert breaker.state == "half_open"
    second = breaker.try_acquire()
    assert second is not None
    second.record(Outcome.SUCCESS)
    assert breaker.state == "closed"


def test_success_threshold_two_needs_two_sequential_trials():
    clock = FakeClock()
    breaker = make(clock, success_threshold=2)
    trip(breaker)
    clock.advance(30.0)
    first = breaker.try_acquire()
    assert first is not None
    assert breaker.try_acquire() is None
    first.record(Outcome.SUCCESS)
    assert breaker.state == "half_open"
    second = breaker.try_acquire()
    assert second is not None
    assert breaker.try_acquire() is None
    second.record(Outcome.SUCCESS)
    assert breaker.state == "closed"


def test_success_threshold_two_failure_after_one_success_reopens():
    clock = FakeClock()
    breaker = make(clock, success_threshold=2)
    trip(breaker)
    clock.advance(30.0)
    settle(breaker, Outcome.SUCCESS)
    settle(breaker, Outcome.RESET)
    assert breaker.state == "open"
    clock.advance(30.0)
    settle(breaker, Outcome.SUCCESS)
    assert breaker.state == "half_open"  # the earlier success does not carry over


def test_stale_permits_from_closed_state_change_nothing():
    clock = FakeClock()
    breaker = make(clock)
    stragglers = [breaker.try_acquire() for _ in range(3)]
    trip(breaker)
    clock.advance(30.0)
    trial = breaker.try_acquire()
    assert trial is not None
    # A success from before the circuit opened must not close it,
    # and a late failure must not re-open it behind the trial's back.
    assert stragglers[0] is not None and stragglers[1] is not None
    stragglers[0].record(Outcome.SUCCESS)
    stragglers[1].record(Outcome.RESET)
    assert breaker.state == "half_open"
    assert breaker.try_acquire() is None
    trial.record(Outcome.SUCCESS)
    assert breaker.state == "closed"
    assert stragglers[2] is not None
    stragglers[2].record(Outcome.RESET)
    assert breaker.consecutive_failures == 0


def test_a_permit_settles_once():
    breaker = make(FakeClock())
    permit = breaker.try_acquire()
    assert isinstance(permit, Permit)
    permit.record(Outcome.RESET)
    permit.record(Outcome.RESET)
    permit.release()
    assert permit.settled
    assert breaker.consecutive_failures == 1


def test_defaults_follow_the_design():
    clock = FakeClock()
    breaker = EndpointBreaker(clock)
    for _ in range(4):
        settle(breaker, Outcome.RESET)
    assert breaker.state == "closed"
    settle(breaker, Outcome.RESET)
    assert breaker.state == "open"
    clock.advance(29.0)
    assert breaker.state == "open"
    clock.advance(1.0)
    settle(breaker, Outcome.SUCCESS)
    assert breaker.state == "closed"


@pytest.mark.parametrize(
    "kwargs", [{"fail_max": 0}, {"success_threshold": 0}, {"reset_timeout": -1.0}]
)
def test_invalid_settings_are_rejected(kwargs: dict[str, float]):
    with pytest.raises(ValueError):
        EndpointBreaker(FakeClock(), **kwargs)  # type: ignore[arg-type]


def test_every_state_change_is_told_once_in_order():
    clock = FakeClock()
    changes: list[tuple[str, str]] = []
    breaker = make(clock, on_change=lambda old, new: changes.append((old, new)))  # type: ignore[arg-type]
    trip(breaker)
    assert changes == [("closed", "open")]
    clock.advance(30.0)
    assert breaker.admits()  # looking at it after reset_timeout moves it to half open
    assert changes[-1] == ("open", "half_open")
    settle(breaker, Outcome.SUCCESS)
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    for _ in range(3):
        settle(breaker, Outcome.SUCCESS)  # no change, nothing told
    assert len(changes) == 3
