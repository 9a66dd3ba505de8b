"""`treasure evaluate`: length-instruction violation and win rate (the paper's table), marker adherence,
marker prediction, long-tail buckets, optional HumanEvalFix, and an HTML report. See docs/evaluate.md."""

from treasure.evaluate.config import DEFAULT_SUITES, SUITES, EvalConfig, JudgeConfig
from treasure.evaluate.runner import evaluate

__all__ = ["DEFAULT_SUITES", "SUITES", "EvalConfig", "JudgeConfig", "evaluate", "paper_table"]


def paper_table(metrics: dict):
    """The paper-style table (Baseline / TreasureMarked / +fixed) for the terminal."""
    from treasure.evaluate.report import paper_table as table

    return table(metrics)
