"""Pilotfish's benchmark harness: Pilotfish against nginx, HAProxy, a Go gateway and a naive
aiohttp proxy, measured side by side on one machine. Entry point: ``python -m bench.run``."""
