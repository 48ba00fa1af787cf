"""Upstream transports behind one small interface (``Transport``)."""
