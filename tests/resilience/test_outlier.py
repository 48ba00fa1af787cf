import pytest

from resilience.clock import FakeClock
from resilience.outcome import Outcome
from resilience.outlier import Ejected, OutlierDetector

Oc = Outcome
MEMBERS = ["a", "b", "c", "d"]


def detector(clock: FakeClock, members: list[str] = MEMBERS, **kwargs: float) -> OutlierDetector:
    d = OutlierDetector(clock, **kwargs)  # type: ignore[arg-type]
    d.set_members(members)
    return d


def fail(d: OutlierDetector, id: str, times: int = 5, outcome: Outcome = Oc.HTTP_5XX):
    results = [d.record(id, outcome) for _ in range(times)]
    assert all(r is None for r in results[:-1])
    return results[-1]


@pytest.mark.parametrize(
    ("outcomes", "reason"),
    [
        ([Oc.HTTP_5XX] * 5, "consecutive_5xx"),
        ([Oc.HTTP_5XX] * 4, None),
        ([Oc.GATEWAY_ERROR] * 5, "consecutive_gateway_failure"),
        ([Oc.GATEWAY_ERROR] * 4 + [Oc.HTTP_5XX], "consecutive_5xx"),
        ([Oc.HTTP_5XX] * 4 + [Oc.GATEWAY_ERROR], "consecutive_5xx"),
        ([Oc.HTTP_5XX] * 4 + [Oc.SUCCESS] + [Oc.HTTP_5XX] * 4, None),
        ([Oc.CONNECT_FAILURE] * 5, "consecutive_local_origin_failure"),
        (
            [Oc.RESET, Oc.TIMEOUT, Oc.CONNECT_FAILURE, Oc.RESET, Oc.TIMEOUT],
            "consecutive_local_origin_failure",
        ),
        ([Oc.RESET] * 4 + [Oc.HTTP_5XX] + [Oc.RESET], None),  # a response proves the connection
        ([Oc.HTTP_5XX] * 4 + [Oc.RESET, Oc.HTTP_5XX], "consecutive_5xx"),
        ([Oc.HTTP_5XX] * 4 + [Oc.LOCAL_REJECTION] * 3 + [Oc.HTTP_5XX], "consecutive_5xx"),
        ([Oc.LOCAL_REJECTION] * 10, None),
        ([Oc.SUCCESS] * 10, None),
    ],
)
def test_consecutive_detectors(outcomes: list[Outcome], reason: str | None):
    clock = FakeClock()
    d = detector(clock)
    results = [d.record("a", o) for o in outcomes]
    assert all(r is None for r in results[:-1])
    if reason is None:
        assert results[-1] is None
        assert not d.is_ejected("a")
    else:
        assert results[-1] == Ejected(id="a", until=clock.now() + 30.0, times=1, reason=reason)
        assert d.is_ejected("a")


@pytest.mark.parametrize(
    ("detector_kwargs", "outcome", "ejected"),
    [
        ({"consecutive_5xx": 0}, Oc.HTTP_5XX, False),
        ({"consecutive_5xx": 0}, Oc.GATEWAY_ERROR, True),
        ({"consecutive_gateway_failure": 0}, Oc.GATEWAY_ERROR, True),  # still a 5xx
        ({"consecutive_local_origin_failure": 0}, Oc.RESET, False),
        ({"consecutive_5xx": 2}, Oc.HTTP_5XX, True),
    ],
)
def test_thresholds_can_be_tuned_or_disabled(
    detector_kwargs: dict[str, int], outcome: Outcome, ejected: bool
):
    d = detector(FakeClock(), **detector_kwargs)
    for _ in range(8):
        d.record("a", outcome)
    assert d.is_ejected("a") is ejected


@pytest.mark.parametrize(
    ("members", "percent", "allowed"),
    [
        (2, 50, [True, False]),
        (3, 50, [True, False, False]),
        (4, 50, [True, True, False, False]),
        (3, 10, [True, False, False]),  # the one-ejection floor beats the percentage
        (10, 20, [True, True, False]),
        (1, 50, [False]),  # never eject the only endpoint below 100%
        (1, 100, [True]),
        (2, 100, [True, True]),
        (3, 0, [False, False, False]),
    ],
)
def test_max_ejection_percent(members: int, percent: int, allowed: list[bool]):
    ids = [f"e{i}" for i in range(members)]
    d = detector(FakeClock(), ids, max_ejection_percent=percent)
    results = [fail(d, id) is not None for id in ids[: len(allowed)]]
    assert results == allowed
    assert len(d.ejected_ids()) == sum(allowed)


def test_refused_ejection_happens_once_capacity_frees():
    clock = FakeClock()
    d = detector(clock, ["a", "b"])
    assert fail(d, "a") is not None
    assert fail(d, "b") is None
    clock.advance(30.0)
    assert not d.is_ejected("a")
    ejected = d.record("b", Oc.HTTP_5XX)
    assert ejected is not None and ejected.id == "b"


def test_only_members_are_ejected_and_counted():
    clock = FakeClock()
    d = detector(clock, ["a", "b"])
    assert fail(d, "x") is None
    assert not d.is_ejected("x")
    assert fail(d, "a") is not None
    d.set_members(["b", "c"])  # a leaves while ejected: it no longer uses up the share
    assert fail(d, "b") is not None
    assert d.ejected_ids() == {"a", "b"}


@pytest.mark.parametrize(
    ("ejections", "durations"),
    [
        (4, [30.0, 60.0, 90.0, 120.0]),
        (12, [30.0 * n for n in range(1, 10)] + [300.0, 300.0, 300.0]),
    ],
)
def test_ejection_time_grows_with_each_ejection_and_is_capped(
    ejections: int, durations: list[float]
):
    clock = FakeClock()
    d = detector(clock)
    seen = []
    for _ in range(ejections):
        ejected = fail(d, "a")
        assert ejected is not None
        seen.append(ejected.until - clock.now())
        clock.set(ejected.until)  # fail again the moment it returns
    assert seen == pytest.approx(durations)


def test_max_below_base_still_ejects_for_base():
    d = detector(FakeClock(), base_ejection_time=30.0, max_ejection_time=10.0)
    ejected = fail(d, "a")
    assert ejected is not None and ejected.until == pytest.approx(1000.0 + 30.0)


def test_returns_after_ejection_time_with_counters_reset():
    clock = FakeClock()
    d = detector(clock)
    ejected = fail(d, "a", outcome=Oc.GATEWAY_ERROR)
    assert ejected is not None
    for _ in range(3):  # straggling results of requests sent before the ejection
        assert d.record("a", Oc.GATEWAY_ERROR) is None
    clock.advance(29.999)
    assert d.is_ejected("a")
    clock.advance(0.001)
    assert not d.is_ejected("a")
    assert d.ejected_ids() == frozenset()
    assert d.snapshot("a") == {
        "ejected": False,
        "ejected_until": None,
        "times_ejected": 1,
        "consecutive_5xx": 0,
        "consecutive_gateway_failure": 0,
        "consecutive_local_origin_failure": 0,
    }
    # a fresh run of failures is needed after the return
    assert fail(d, "a", times=4, outcome=Oc.GATEWAY_ERROR) is None


@pytest.mark.parametrize(
    ("healthy_for", "times_before", "next_duration"),
    [
        (0.0, 1, 60.0),  # fails again at once: ejected longer
        (29.0, 1, 60.0),
        (30.0, 1, 30.0),  # a full base time in service forgives one ejection
        (30.0, 3, 90.0),
        (60.0, 3, 60.0),
        (89.9, 3, 60.0),
        (1000.0, 3, 30.0),  # never below one
    ],
)
def test_times_ejected_decays_while_in_service(
    healthy_for: float, times_before: int, next_duration: float
):
    clock = FakeClock()
    d = detector(clock)
    for _ in range(times_before):
        ejected = fail(d, "a")
        assert ejected is not None
        clock.set(ejected.until)
    clock.advance(healthy_for)
    ejected = fail(d, "a")
    assert ejected is not None
    assert ejected.until - clock.now() == pytest.approx(next_duration)


def test_history_survives_leaving_and_rejoining():
    clock = FakeClock()
    d = detector(clock, ["a", "b"])
    first = fail(d, "a")
    assert first is not None
    d.set_members(["b"])
    clock.set(first.until)
    d.set_members(["a", "b"])
    assert d.snapshot("a")["times_ejected"] == 1
    again = fail(d, "a")
    assert again is not None and again.times == 2


def test_clean_history_of_departed_endpoints_is_dropped():
    clock = FakeClock()
    d = detector(clock, ["a", "b"])
    first = fail(d, "a")
    assert first is not None
    d.set_members(["b"])
    clock.set(first.until + 30.0)  # decayed to zero
    d.set_members(["b", "c"])
    assert d.snapshot("a")["times_ejected"] == 0
    assert "a" not in d._records


def test_snapshot_of_an_ejected_and_an_unknown_endpoint():
    clock = FakeClock()
    d = detector(clock)
    fail(d, "a", outcome=Oc.RESET)
    d.record("b", Oc.HTTP_5XX)
    d.record("b", Oc.GATEWAY_ERROR)
    assert d.snapshot("a")["ejected"] is True
    assert d.snapshot("a")["ejected_until"] == pytest.approx(clock.now() + 30.0)
    assert d.snapshot("b")["consecutive_5xx"] == 2
    assert d.snapshot("b")["consecutive_gateway_failure"] == 1
    assert d.snapshot("zzz")["times_ejected"] == 0


@pytest.mark.parametrize(
    "kwargs",
    [{"base_ejection_time": 0.0}, {"max_ejection_percent": 101}, {"max_ejection_percent": -1}],
)
def test_invalid_settings_are_rejected(kwargs: dict[str, float]):
    with pytest.raises(ValueError):
        OutlierDetector(FakeClock(), **kwargs)  # type: ignore[arg-type]


def test_uneject_ends_an_ejection_early_but_keeps_its_count():
    clock = FakeClock()
    det = OutlierDetector(clock, consecutive_5xx=1, base_ejection_time=30.0)
    det.set_members(["a", "b", "c"])
    assert det.record("a", Outcome.HTTP_5XX) is not None
    assert det.uneject("a") is True
    assert not det.is_ejected("a")
    assert det.uneject("a") is False  # not ejected any more
    assert det.uneject("unknown") is False
    clock.advance(1.0)
    second = det.record("a", Outcome.HTTP_5XX)
    assert second is not None and second.times == 2  # fails again soon: ejected for longer
    assert second.until == clock.now() + 60.0


def test_each_ended_ejection_is_told_once_with_why():
    clock = FakeClock()
    returned: list[tuple[str, str]] = []
    d = OutlierDetector(
        clock, base_ejection_time=30.0, on_return=lambda i, why: returned.append((i, why))
    )
    d.set_members(MEMBERS)
    assert fail(d, "a") is not None
    clock.advance(29.9)
    assert d.is_ejected("a") and returned == []
    clock.advance(0.1)
    assert not d.is_ejected("a")  # the return happens when someone looks
    assert not d.is_ejected("a")
    assert returned == [("a", "its ejection time is over")]
    assert fail(d, "b") is not None
    assert d.uneject("b") and not d.uneject("b")
    assert returned[-1] == ("b", "a health check passed") and len(returned) == 2
