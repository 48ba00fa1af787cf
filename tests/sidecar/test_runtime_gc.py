"""After start-up the collector leaves the start-up objects alone and runs less often."""

from __future__ import annotations

import gc

from sidecar.runtime import GC_THRESHOLD, settle_garbage_collector


def test_settling_freezes_what_exists_and_raises_the_young_threshold() -> None:
    before = gc.get_threshold()
    try:
        gc.unfreeze()
        survivors = [[] for _ in range(10)]  # tracked containers made before settling
        settle_garbage_collector()
        assert gc.get_freeze_count() >= len(survivors)
        assert gc.get_threshold() == (GC_THRESHOLD, *before[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
