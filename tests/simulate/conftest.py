"""The live-vs-simulated test runs its live half in the resilience tests' lab."""

from tests.resilience_it.conftest import client, lab

__all__ = ["client", "lab"]
