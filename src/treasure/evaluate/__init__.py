"""`treasure evaluate`: length-instruction violation and win rate (the paper's table), marker adherence,
marker prediction, long-tail buckets, optional language requests and HumanEvalFix, and an HTML report.
See docs/evaluate.md.

Each suite is a `Suite` (treasure.evaluate.suite) in its own module under `treasure.evaluate.suites`;
`register` adds one."""

from treasure.evaluate.config import DEFAULT_SUITES, EvalConfig, JudgeConfig
from treasure.evaluate.report import ReportConfig, paper_table, write_report
from treasure.evaluate.runner import evaluate
from treasure.evaluate.suite import Suite
from treasure.evaluate.suites import REGISTRY, register, resolve

__all__ = [
    "DEFAULT_SUITES",
    "REGISTRY",
    "EvalConfig",
    "JudgeConfig",
    "ReportConfig",
    "Suite",
    "evaluate",
    "paper_table",
    "register",
    "resolve",
    "write_report",
]
