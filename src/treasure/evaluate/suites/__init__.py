"""The registered suites of `treasure evaluate`, in report order: the built-ins, then any added with
`register` (a plugin: any object satisfying `treasure.evaluate.suite.Suite`)."""

from __future__ import annotations

from treasure.errors import TreasureError
from treasure.evaluate.config import EvalConfig
from treasure.evaluate.suite import Suite
from treasure.evaluate.suites.adherence import Adherence
from treasure.evaluate.suites.code import Code
from treasure.evaluate.suites.language_request import LanguageRequest
from treasure.evaluate.suites.length_instruct import LengthInstruct
from treasure.evaluate.suites.long_tail import LongTail
from treasure.evaluate.suites.marker_prediction import MarkerPrediction
from treasure.evaluate.suites.win_rate import WinRate

BUILT_IN: tuple[Suite, ...] = (
    LengthInstruct(),
    WinRate(),
    Adherence(),
    LanguageRequest(),
    MarkerPrediction(),
    LongTail(),
    Code(),
)
REGISTRY: dict[str, Suite] = {suite.name: suite for suite in BUILT_IN}


def register(suite: Suite) -> Suite:
    """Add `suite` after the registered ones (its name must be new) and return it."""
    if not isinstance(suite, Suite):
        raise TreasureError(f"{suite!r} is not a Suite (name, needs_baseline, needs_judge, run, render)")
    if not suite.name or "_" in suite.name:
        raise TreasureError(f"suite name {suite.name!r}: words joined by '-', not '_'")
    if suite.name in REGISTRY:
        raise TreasureError(f"suite {suite.name!r} is already registered")
    REGISTRY[suite.name] = suite
    return suite


def resolve(config: EvalConfig) -> list[Suite]:
    """The registered suites `config.suites` names, in its order; unknown names, or suites comparing
    against a baseline without `baseline_dir`, are errors."""
    unknown = [name for name in config.suites if name not in REGISTRY]
    if unknown:
        raise TreasureError(f"unknown suite(s) {', '.join(unknown)}; valid: {', '.join(REGISTRY)}")
    suites = [REGISTRY[name] for name in config.suites]
    missing = sorted(suite.name for suite in suites if suite.needs_baseline)
    if missing and config.baseline_dir is None:
        raise TreasureError(f"suite(s) {', '.join(missing)} compare against a baseline: set baseline_dir")
    return suites
