"""Pilotfish's asyncio shell: config, CLI, listeners, request pipeline, transport, admin."""

__version__ = "0.1.0"
