"""Pilotfish configuration: parsed once, at the edge, into frozen typed objects."""

from sidecar.config.load import ConfigError, load_file, load_text, plural, redacted
from sidecar.config.schema import Config, UpstreamConfig

__all__ = [
    "Config",
    "ConfigError",
    "UpstreamConfig",
    "load_file",
    "load_text",
    "plural",
    "redacted",
]
