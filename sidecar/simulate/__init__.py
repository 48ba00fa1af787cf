"""``pilotfish simulate``: a configuration against a fault scenario, in virtual time.

``simulate(config, scenario)`` (``driver.py``) runs the live cluster and pipeline classes on
an event loop whose clock jumps to the next timer (``vloop.py``), over a simulated network
(``adapter.py``, ``fleet.py``); ``report.py`` and ``plot.py`` turn the result into a
table, JSON and a PNG timeline.
"""
