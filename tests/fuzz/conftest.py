"""The sidecar tests' fixtures (backends, sidecars), shared with the fuzz tests."""

from tests.sidecar.conftest import backends, sidecar_factory

__all__ = ["backends", "sidecar_factory"]
