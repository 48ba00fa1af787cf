"""``python -m sidecar`` is the ``pilotfish`` command."""

from sidecar.cli import main

main()
