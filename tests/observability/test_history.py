"""The sampled history behind the admin page's charts: rates, error ratios and p99 from
the request counters, state words from the clusters, bounded in memory."""

from __future__ import annotations

import asyncio
import random

import pytest
import yaml
from prometheus_client import CollectorRegistry

from discovery.model import Endpoint, EndpointSet
from resilience.clock import FakeClock
from resilience.outcome import Outcome
from sidecar.cluster import Cluster
from sidecar.config.load import load_text
from sidecar.events import EventBus
from sidecar.telemetry import history as history_module
from sidecar.telemetry.history import History, quantile
from sidecar.telemetry.metrics import LATENCY_BUCKETS, RequestMetrics

A = Endpoint("127.0.0.1", 9001, name="alpha")
B = Endpoint("127.0.0.1", 9002)


def make_cluster(clock: FakeClock, bus: EventBus) -> Cluster:
    doc = {
        "service": {"name": "t", "port": 1},
        "upstreams": [
            {
                "name": "api",
                "listen": "127.0.0.1:0",
                "discovery": {"static": [A.id, B.id]},
                "outlier_detection": {
                    "consecutive_5xx": 2,
                    "base_ejection_time": "60s",
                    "max_ejection_percent": 100,
                },
            }
        ],
    }
    config = load_text(yaml.safe_dump(doc), environ={}).upstreams[0]
    cluster = Cluster.from_config(config, clock=clock, rng=random.Random(1), events=bus)
    cluster.update(EndpointSet.of([A, B]))
    return cluster


class Rig:
    def __init__(self, points: int = 120) -> None:
        self.clock = FakeClock()
        self.wall = 1_700_000_000.0
        self.bus = EventBus()
        self.metrics = RequestMetrics(CollectorRegistry(auto_describe=False))
        self.cluster = make_cluster(self.clock, self.bus)
        self.clusters = {"api": self.cluster}
        self.history = History(
            self.metrics,
            lambda: self.clusters,
            self.bus,
            points=points,
            clock=self.clock,
            wall=lambda: self.wall,
        )
        self.history.prime()

    def attempts(self, endpoint: Endpoint, outcome: str, n: int, seconds: float) -> None:
        """``n`` attempts as the request path counts them: the counter and the histogram."""
        self.metrics.attempts[("api", endpoint.id, outcome)].inc(n)
        for _ in range(n):
            self.metrics.attempt_duration[("api", endpoint.id)].observe(seconds)

    def tick(self, seconds: float = 5.0) -> None:
        self.clock.advance(seconds)
        self.wall += seconds


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ([0, 100, 0, 0], 0.1 + 0.4 * 0.99),  # interpolated within its bucket
        ([100, 0, 0, 0], 0.1 * 0.99),  # the first bucket starts at 0
        ([50, 0, 0, 50], 1.0),  # above every bound: the highest bound
        ([0, 0, 0, 0], None),  # nothing observed
        ([1, 0, 0, 0], 0.099),
    ],
)
def test_quantile_interpolates_as_prometheus_does(
    counts: list[int], expected: float | None
) -> None:
    got = quantile(0.99, (0.1, 0.5, 1.0), counts)
    assert got == (None if expected is None else pytest.approx(expected))


def test_a_sample_holds_rates_error_ratios_p99_and_state_words() -> None:
    rig = Rig()
    rig.attempts(A, "success", 90, 0.004)
    rig.attempts(A, "http_5xx", 10, 0.004)
    rig.attempts(B, "success", 50, 0.2)
    rig.attempts(B, "cancelled", 5, 0.2)  # not the endpoint's failure
    rig.tick()
    rig.history.sample()
    doc = rig.history.as_json()
    assert doc["interval"] == 5.0 and doc["window"] == 600.0
    assert doc["t"] == [rig.wall]
    (api,) = doc["clusters"]
    assert api["name"] == "api"
    assert api["rps"] == [pytest.approx(31.0)]  # 155 attempts in 5 s
    assert api["error_rate"] == [pytest.approx(10 / 155, abs=1e-4)]
    p99 = quantile(0.99, LATENCY_BUCKETS, by_bucket())
    assert p99 is not None and api["p99_ms"][0] == pytest.approx(p99 * 1000, abs=1e-3)
    assert api["available"] == [2]
    alpha, b = api["endpoints"]
    assert (alpha["id"], alpha["name"]) == (A.id, "alpha")
    assert (b["id"], b["name"]) == (B.id, B.id)
    assert alpha["rps"] == [20.0] and alpha["error_rate"] == [0.1]
    assert 2.5 < alpha["p99_ms"][0] <= 5.0  # in the (2.5 ms, 5 ms] bucket
    assert b["rps"] == [11.0] and b["error_rate"] == [0.0]
    assert 100 < b["p99_ms"][0] <= 250
    assert alpha["state"] == ["available"] and b["state"] == ["available"]


def by_bucket() -> list[int]:
    """The bucket counts of the attempts of the test above, the cluster's together."""
    counts = [0] * (len(LATENCY_BUCKETS) + 1)
    counts[LATENCY_BUCKETS.index(0.005)] += 100
    counts[LATENCY_BUCKETS.index(0.25)] += 55
    return counts


def test_each_sample_counts_only_its_own_interval_and_a_quiet_one_has_no_ratio() -> None:
    rig = Rig()
    rig.attempts(A, "success", 10, 0.001)
    rig.tick(2.0)
    rig.history.sample()
    rig.tick(5.0)
    rig.history.sample()  # nothing since the last read
    rig.attempts(A, "connect_failure", 4, 0.001)
    rig.tick(4.0)
    rig.history.sample()
    alpha = rig.history.as_json()["clusters"][0]["endpoints"][0]
    assert alpha["rps"] == [5.0, 0.0, 1.0]
    assert alpha["error_rate"] == [0.0, None, 1.0]
    assert alpha["p99_ms"][1] is None


def test_an_ejection_shows_in_the_state_column_and_the_events_of_the_window() -> None:
    rig = Rig()
    rig.tick()
    rig.history.sample()
    for _ in range(2):
        rig.cluster.record(rig.cluster.states[A.id], Outcome.HTTP_5XX)
    rig.attempts(A, "http_5xx", 2, 0.001)
    rig.tick()
    rig.history.sample()
    doc = rig.history.as_json()
    api = doc["clusters"][0]
    assert api["endpoints"][0]["state"] == ["available", "ejected"]
    assert api["available"] == [2, 1]
    (ejected,) = [e for e in doc["events"] if e["kind"] == "endpoint_ejected"]
    assert (ejected["endpoint"], ejected["endpoint_name"]) == (A.id, "alpha")
    assert ejected["message"].startswith(f"endpoint alpha ({A.id}) of api ejected")


def test_memory_is_bounded_by_points_and_by_current_members() -> None:
    rig = Rig(points=3)
    for _ in range(10):
        rig.attempts(A, "success", 1, 0.001)
        rig.tick()
        rig.history.sample()
    assert len(rig.history.samples) == 3
    doc = rig.history.as_json()
    assert len(doc["t"]) == 3 and doc["window"] == 15.0
    # An endpoint that left is not sampled any more, and is gone once out of the window.
    rig.cluster.update(EndpointSet.of([A]))
    rig.tick()
    rig.history.sample()
    assert [e["id"] for e in rig.history.as_json()["clusters"][0]["endpoints"]] == [A.id]
    assert all(B.id not in s.endpoints["api"] for s in list(rig.history.samples)[-1:])
    # One that joined has nulls before it existed.
    c = Endpoint("127.0.0.1", 9003)
    rig.cluster.update(EndpointSet.of([A, c]))
    rig.tick()
    rig.history.sample()
    joined = rig.history.as_json()["clusters"][0]["endpoints"][1]
    assert joined["id"] == c.id and joined["rps"] == [None, None, 0.0]
    # A cluster removed is gone from the next sample.
    rig.clusters.clear()
    rig.tick()
    rig.history.sample()
    assert rig.history.as_json()["clusters"] == []


def test_a_cluster_charts_at_most_max_endpoints_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(history_module, "MAX_ENDPOINTS", 1)
    rig = Rig()
    rig.attempts(B, "success", 10, 0.001)
    rig.tick()
    rig.history.sample()
    api = rig.history.as_json()["clusters"][0]
    assert [e["id"] for e in api["endpoints"]] == [A.id]
    assert api["rps"] == [2.0]  # the cluster's own series counts every endpoint


async def test_the_task_samples_every_interval_until_cancelled() -> None:
    rig = Rig()
    history = History(rig.metrics, lambda: rig.clusters, rig.bus, interval=0.01)
    task = asyncio.create_task(history.run())
    try:
        async with asyncio.timeout(5):
            while len(history.samples) < 3:
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert [c["name"] for c in history.as_json()["clusters"]] == ["api"]
