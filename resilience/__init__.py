"""Pure policy cores of Pilotfish: no I/O, no event loop, time and randomness injected."""
