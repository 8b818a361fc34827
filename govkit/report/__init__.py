"""Reports from the evidence: the board report (HTML, Markdown, JSON), its signed manifest, and
their verification against the store."""

from .board import FORMATS, Report, ReportCheck, board_report, make_report, verify_report
from .snapshot import Period, parse_period, take_snapshot

__all__ = ["FORMATS", "Period", "Report", "ReportCheck", "board_report", "make_report", "parse_period",
           "take_snapshot", "verify_report"]
