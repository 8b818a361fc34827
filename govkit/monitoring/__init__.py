"""Ongoing monitoring from the audit log: windows of production calls against a reference, by the
plan in [monitoring], chained with their sketches (counts, no text), breaches escalated as
incidents, on a device and across the fleet's synced segments."""

from .run import MonitorRun, open_breaches, run_monitoring
from .sketch import Sketch

__all__ = ["MonitorRun", "Sketch", "open_breaches", "run_monitoring"]
