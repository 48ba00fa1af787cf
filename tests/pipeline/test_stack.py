"""A cluster's stack: the layers in their pinned order, and a policy that is off absent."""

from __future__ import annotations

import random

import pytest

from resilience.budget import RetryBudget
from resilience.clock import FakeClock
from resilience.retry import RetryPolicy
from sidecar.pipeline.stack import LAYER_ORDER, StackSettings, build_stack, layers_of
from sidecar.pipeline.timeouts import TimeoutQueues
from tests.pipeline.support import Recorder, cluster

POLICY = RetryPolicy(attempts=2)


def stack(settings: StackSettings) -> list[str]:
    c = cluster()
    built = build_stack(
        c,
        transport=None,  # type: ignore[arg-type]
        settings=settings,
        clock=FakeClock(),
        rng=random.Random(1),
        observer=Recorder(),
        timeouts=TimeoutQueues(),
    )
    return layers_of(built)


def test_the_order_is_pinned():
    assert LAYER_ORDER == ("deadline", "retry", "attempt")
    budget = RetryBudget(FakeClock())
    assert stack(StackSettings(15.0, 1.0, POLICY, budget)) == list(LAYER_ORDER)


@pytest.mark.parametrize(
    ("settings", "absent"),
    [
        (StackSettings(0.0, 1.0, POLICY, RetryBudget(FakeClock())), {"deadline"}),
        (StackSettings(15.0, None, POLICY, RetryBudget(FakeClock())), set()),
        (StackSettings(15.0, 1.0, None, None), {"retry"}),
        (StackSettings(0.0, None, None, None), {"deadline", "retry"}),
    ],
)
def test_a_policy_that_is_off_is_not_in_the_stack(settings, absent):
    assert stack(settings) == [name for name in LAYER_ORDER if name not in absent]


def test_settings_follow_the_configuration():
    c = cluster(retries={"attempts": 0, "per_try_timeout": 0}, timeouts={"total": 0})
    assert c.config is not None
    settings = StackSettings.of(c.config, c.budget)
    assert (settings.total, settings.per_try, settings.retry) == (0, None, None)
