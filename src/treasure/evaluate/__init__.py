"""`treasure evaluate`: length-instruction violation and win rate (the paper's table), marker adherence,
marker prediction, long-tail buckets, optional HumanEvalFix, and an HTML report. See the README."""

from treasure.evaluate.config import DEFAULT_SUITES, SUITES, EvalConfig, JudgeConfig
from treasure.evaluate.report import ReportConfig, paper_table, write_report
from treasure.evaluate.runner import evaluate

__all__ = [
    "DEFAULT_SUITES",
    "SUITES",
    "EvalConfig",
    "JudgeConfig",
    "ReportConfig",
    "evaluate",
    "paper_table",
    "write_report",
]
