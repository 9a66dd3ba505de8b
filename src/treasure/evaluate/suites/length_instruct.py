"""The length-instruct suite (AlpacaEval-LI protocol, the paper's table): "Answer the following instruction
using N words or less.", shown as the paper table in the report and in the terminal.

Three rows measured in one run, as in the paper: Baseline (baseline model, instruction in the prompt),
TreasureMarked (marked model, conditioning, instruction in the prompt) and +fixed (marked model, fixed
mode: the sentence is detected, removed and turned into the marker `length_tokens = N`, or for a
model trained without `length_tokens` the longest `length_bucket` that fits under N).
Violation: the answer has more than N words (whitespace-separated). Win rate: each row against the
Baseline row's answer to the same prompt; as in AlpacaEval-LI an answer over its limit loses to one
within it, otherwise the judge decides. The Baseline row is 50% by construction.

Extra rows, after +fixed and never in its place: "+fixed +budget" (fixed mode with the decoder's length
budget, `GenerationConfig.length_budget`; `EvalConfig.length_budget_row`) and "+fixed G=g" for each
scale g of `EvalConfig.guidance_scales` (fixed mode decoded with `GenerationConfig.guidance = g`).
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from treasure.backends import GenerationConfig
from treasure.budget import count_words as words  # AlpacaEval-LI's count, the one the budget keeps
from treasure.evaluate.config import EvalConfig, guidance_label
from treasure.evaluate.judge import Judge, win_rate
from treasure.evaluate.prompts import EvalPrompt
from treasure.evaluate.render import Page, count, esc, html_section, joined, note, pct, table
from treasure.evaluate.runs import GenerationRuns
from treasure.evaluate.suite import section_key
from treasure.evaluate.suites.lengths import lengths_section

if TYPE_CHECKING:
    from treasure.evaluate.context import EvalContext

INSTRUCTION = "Answer the following instruction using {n} words or less."
LENGTH_MARKERS = frozenset({"length_tokens", "length_bucket"})  # what fixed mode sets for a word limit
ROWS: tuple[tuple[str, str], ...] = (
    ("baseline", "Baseline"),
    ("conditioning", "TreasureMarked"),
    ("fixed", "+fixed"),
)
BUDGET_ROW = ("fixed-budget", "+fixed +budget")  # fixed mode with the decoder's length budget


def extra_rows(config: EvalConfig) -> list[tuple[str, str, GenerationConfig]]:
    """The fixed-mode rows after +fixed: (name, label, decoding options) for +budget (when
    `length_budget_row`) and one per scale of `guidance_scales`."""
    rows = []
    if config.length_budget_row:
        rows.append((*BUDGET_ROW, replace(config.generation, length_budget=True)))
    for scale in config.guidance_scales:
        guided = replace(config.generation, guidance=scale)
        rows.append((f"fixed-g{scale:g}", f"+fixed {guidance_label(scale)}", guided))
    return rows


def limit_scale(config: EvalConfig, stats: dict[str, Any], prompts: Sequence[EvalPrompt]) -> float:
    """`config.limit_scale`, or for "train": median training answer length / median reference length."""
    if config.limit_scale != "train":
        return float(config.limit_scale)
    summary = stats.get("markers", {}).get("length_tokens", {}).get("summary", {})
    references = [words(p.reference) for p in prompts if p.reference]
    if not summary.get("median") or not references:
        return 1.0
    return min(1.0, float(summary["median"]) / statistics.median(references))


def limits(prompts: Sequence[EvalPrompt], config: EvalConfig, scale: float) -> list[int]:
    """N per prompt: clip(round(words(reference) × scale)); drawn from `limit_range` without reference."""
    rng = random.Random(f"{config.seed}:limits")
    low, high = config.limit_clip
    out = []
    for prompt in prompts:
        if prompt.reference:
            out.append(max(low, min(high, round(words(prompt.reference) * scale))))
        else:
            out.append(rng.randint(*config.limit_range))
    return out


@dataclass
class LengthInstructResult:
    """The metrics section plus per-prompt flags (for the long-tail split)."""

    section: dict[str, Any]
    violations: dict[str, list[bool]]
    outcomes: dict[str, list[float]]


def _outcome(judged: float, first_over: bool, second_over: bool) -> float:
    if first_over != second_over:
        return 0.0 if first_over else 1.0
    return judged


def run_length_instruct(
    runs: GenerationRuns, judge: Judge, prompts: Sequence[EvalPrompt], config: EvalConfig, scale: float
) -> LengthInstructResult:
    """Generate the rows (the three of the paper, then `extra_rows`), count violations and judge each row
    against Baseline."""
    ns = limits(prompts, config, scale)
    texts = [f"{INSTRUCTION.format(n=n)}\n\n{p.prompt}" for p, n in zip(prompts, ns, strict=True)]
    answers = {
        "baseline": runs.run("li-baseline", "baseline", texts),
        "conditioning": runs.run("li-conditioning", "marked", texts),
        "fixed": runs.run("li-fixed", "marked", texts, mode="fixed"),
    }
    extra = extra_rows(config)
    for name, _, generation in extra:
        answers[name] = runs.run(f"li-{name}", "marked", texts, mode="fixed", config=generation)
    marked = runs.generator("marked")
    fixed_set = sum(1 for t in texts if LENGTH_MARKERS & marked.prepare(t, mode="fixed").given_markers.keys())
    violations = {
        name: [words(r["response"]) > n for r, n in zip(rows, ns, strict=True)]
        for name, rows in answers.items()
    }
    base = [r["response"] for r in answers["baseline"]]
    outcomes = {"baseline": [0.5] * len(texts)}
    for name in [n for n in answers if n != "baseline"]:
        judged = judge.compare(texts, [r["response"] for r in answers[name]], base)
        outcomes[name] = [
            _outcome(j, a, b)
            for j, a, b in zip(judged, violations[name], violations["baseline"], strict=True)
        ]
    rows = [
        {
            "name": name,
            "label": label,
            "violation_rate": round(sum(violations[name]) / len(texts), 4),
            "win_rate": win_rate(outcomes[name]),
            "n": len(texts),
            "judge": "reference row (50% by construction)" if name == "baseline" else judge.name,
        }
        for name, label in [*ROWS, *((name, label) for name, label, _ in extra)]
    ]
    section = {
        "rows": rows,
        "limit_rule": (
            f"N = clip(round(words(reference) × {scale:.3f}), {config.limit_clip[0]}, {config.limit_clip[1]})"
            f" (scale: {config.limit_scale}); prompts without a reference: uniform in {config.limit_range}"
        ),
        "limits": {"median": statistics.median(ns), "min": min(ns), "max": max(ns)},
        "fixed_marker_set": round(fixed_set / len(texts), 4),
        "lengths": {
            name: [{"limit": n, "words": words(r["response"])} for r, n in zip(rows_, ns, strict=True)]
            for name, rows_ in answers.items()
        },
    }
    return LengthInstructResult(section, violations, outcomes)


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
