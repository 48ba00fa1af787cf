"""Traces, metrics and the access log, behind one ``Observer`` the pipeline calls."""
