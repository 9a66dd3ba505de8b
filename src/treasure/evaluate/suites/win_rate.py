"""The win-rate suite: the marked model's plain answers against the baseline's, pairwise by the judge."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from treasure.evaluate.judge import RewardModelJudge, win_rate
from treasure.evaluate.render import Page, count, esc, html_section, note, pct, table

if TYPE_CHECKING:
    from treasure.evaluate.context import EvalContext


@dataclass(frozen=True)
class Verdicts:
    """Per-prompt outcomes (1 win, 0.5 tie, 0 loss) and, for a reward-model judge, both score lists."""

    outcomes: list[float]
    scores: tuple[list[float], list[float]] | None


def verdicts(ctx: EvalContext) -> Verdicts:
    """Marked vs baseline on the main prompts (judged once; long-tail splits the outcomes)."""

    def judge() -> Verdicts:
        texts = [p.prompt for p in ctx.prompts]
        marked = [r["response"] for r in ctx.plain("marked")]
        baseline = [r["response"] for r in ctx.plain("baseline")]
        if isinstance(ctx.judge, RewardModelJudge):
            scores = (ctx.judge.score(texts, marked), ctx.judge.score(texts, baseline))
            return Verdicts(ctx.judge.outcomes(*scores), scores)
        return Verdicts(ctx.judge.compare(texts, marked, baseline), None)

    return ctx.shared("win-rate", judge)


class WinRate:
    """Win / tie / loss of marked vs baseline; a tie counts half a win."""

    name = "win-rate"
    needs_baseline = True
    needs_judge = True

    def run(self, ctx: EvalContext) -> dict[str, Any]:
        judged = verdicts(ctx)
        outcomes = judged.outcomes
        section: dict[str, Any] = {
            "judge": ctx.judge.name,
            "marked_vs_baseline": {
                "win": round(outcomes.count(1.0) / len(outcomes), 4),
                "tie": round(outcomes.count(0.5) / len(outcomes), 4),
                "loss": round(outcomes.count(0.0) / len(outcomes), 4),
                "win_rate": win_rate(outcomes),
                "n": len(outcomes),
            },
        }
        if judged.scores is not None:
            marked, baseline = judged.scores
            section["mean_score"] = {
                "marked": round(sum(marked) / len(marked), 4),
                "baseline": round(sum(baseline) / len(baseline), 4),
            }
        return section

    def render(self, section: Mapping[str, Any], page: Page) -> str:
        pair = section.get("marked_vs_baseline") or {}
        field = "suites.win_rate.marked_vs_baseline"
        if pair:
            cells = [(pct(pair.get(k), f"{field}.{k}"), True) for k in ("win", "tie", "loss", "win_rate")]
            body = table(["Win", "Tie", "Loss", "Win rate", "n"], [[*cells, (count(pair.get("n")), True)]])
        else:
            body = note("No pairs were judged.")
        return html_section(
            "win-rate",
            "Win rate: marked vs baseline",
            "Pairwise comparison of the marked model's answers with the baseline's on the same prompts; "
            "win rate counts a tie as half a win.",
            body,
            f"<p>Judge: {esc(section['judge'])}</p>" if section.get("judge") else "",
        )
