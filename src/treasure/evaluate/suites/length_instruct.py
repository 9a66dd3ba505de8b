"""The length-instruct suite (AlpacaEval-LI, the paper's table): measured by
`treasure.evaluate.length_instruct`, shown as the paper table here and in the terminal."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from treasure.evaluate.length_instruct import LengthInstructResult, limit_scale, run_length_instruct
from treasure.evaluate.render import Page, count, esc, html_section, joined, note, pct, table
from treasure.evaluate.suite import section_key
from treasure.evaluate.suites.lengths import lengths_section

if TYPE_CHECKING:
    from treasure.evaluate.context import EvalContext


def result(ctx: EvalContext) -> LengthInstructResult:
    """The three rows with their per-prompt violations (measured once; long-tail splits them)."""

    def measure() -> LengthInstructResult:
        with ctx.timed("length-instruct"):
            scale = limit_scale(ctx.config, ctx.stats, ctx.prompts)
            return run_length_instruct(ctx.runs, ctx.judge, ctx.prompts, ctx.config, scale)

    return ctx.shared("length-instruct", measure)


def paper_rows(section: Mapping[str, Any]) -> list[list[str]]:
    """The rows as plain strings: label, violation %, win rate %, n, judge."""
    out = []
    for i, row in enumerate(section.get("rows") or []):
        field = f"suites.length_instruct.rows[{i}]"
        out.append(
            [
                str(row.get("label") or row.get("name", "")),
                pct(row.get("violation_rate"), field + ".violation_rate"),
                pct(row.get("win_rate"), field + ".win_rate"),
                count(row.get("n")),
                str(row.get("judge") or ""),
            ]
        )
    return out


def paper_table(metrics: Mapping[str, Any]) -> Table:
    """The paper-style length-instruct table (Baseline / TreasureMarked / +fixed) for the terminal."""
    table = Table(title="Length instructions (AlpacaEval-LI)")
    table.add_column("Model")
    table.add_column("Violation rate", justify="right")
    table.add_column("Win rate", justify="right")
    table.add_column("n", justify="right")
    table.add_column("Judge")
    suite = (metrics.get("suites") or {}).get(section_key(LengthInstruct.name))
    rows = paper_rows(suite) if isinstance(suite, Mapping) else []
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # Text: model output is never read as rich markup
    if not rows:
        table.caption = "length_instruct suite not in metrics"
    return table


class LengthInstruct:
    """Violation rate and win rate of Baseline, TreasureMarked and +fixed under word limits."""

    name = "length-instruct"
    needs_baseline = True
    needs_judge = True

    def run(self, ctx: EvalContext) -> dict[str, Any]:
        return result(ctx).section

    def render(self, section: Mapping[str, Any], page: Page) -> str:
        rows = paper_rows(section)
        body = (
            table(
                ["Model", "Violation rate", "Win rate", "n", "Judge"],
                [
                    [(esc(r[0]), False), (r[1], True), (r[2], True), (r[3], True), (esc(r[4]), False)]
                    for r in rows
                ],
            )
            if rows
            else note("No rows were measured.")
        )
        rule = section.get("limit_rule")
        paper = html_section(
            "length-instruct",
            "Length instructions (paper table)",
            "Share of answers longer than the requested N words (lower is better) and win rate against the "
            "Baseline row's answer to the same prompt (an answer over its limit loses to one within it), "
            "for the baseline, the marked model with the instruction in the prompt, and the marked model "
            "with the instruction replaced by a fixed length marker.",
            body,
            f"<p>Limit rule: {esc(rule)}</p>" if rule else "",
        )
        # with adherence, the length figure follows adherence's sections; without, it follows this one
        alone = "adherence" not in page.sections
        return joined(paper, lengths_section(None, section, page.config) if alone else "")
