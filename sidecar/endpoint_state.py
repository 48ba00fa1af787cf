"""The one word for an endpoint's state, shared by every view of it.

``/clusters`` (its ``state`` field), the live admin page and ``pilotfish demo`` all say
the same thing for the same state, in the words of ``STATES``:

* ``available``: traffic goes to it (healthy, not ejected, its breaker admits);
* ``ejected``: outlier detection took it out for a while;
* ``unhealthy``: the active health check failed it;
* ``breaker open``: its circuit breaker refuses attempts;
* ``breaker half-open``: its breaker lets one trial attempt through.

When several hold, the first in that order after ``available`` is the word (an endpoint
both ejected and unhealthy is ``ejected``). Reading a state may settle what time has ended
(an ejection or an open period over), as ``Cluster.available`` does.
"""

from __future__ import annotations

from typing import Final

from sidecar.cluster import Cluster

AVAILABLE: Final = "available"
EJECTED: Final = "ejected"
UNHEALTHY: Final = "unhealthy"
BREAKER_OPEN: Final = "breaker open"
BREAKER_HALF_OPEN: Final = "breaker half-open"
STATES: Final = (AVAILABLE, EJECTED, UNHEALTHY, BREAKER_OPEN, BREAKER_HALF_OPEN)


def endpoint_state(cluster: Cluster, endpoint_id: str) -> str:
    """The word for ``endpoint_id``'s state in ``cluster`` (one of ``STATES``)."""
    if cluster.outlier is not None and cluster.outlier.is_ejected(endpoint_id):
        return EJECTED
    if cluster.health is not None and not cluster.health.is_healthy(endpoint_id):
        return UNHEALTHY
    breaker = cluster.states[endpoint_id].breaker
    if breaker is not None:
        state = breaker.state
        if state == "open":
            return BREAKER_OPEN
        if state == "half_open":
            return BREAKER_HALF_OPEN
    return AVAILABLE
