"""The optional code suite: HumanEvalFix pass@1 of the marked model (`treasure.evaluate.code`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from treasure.evaluate.code import CodeSuiteConfig, run_code_suite
from treasure.evaluate.render import Page, count, html_section, note, pct, table
from treasure.evaluate.runs import GenerationRuns

if TYPE_CHECKING:
    from treasure.evaluate.context import EvalContext


class Code:
    """Share of buggy functions the marked model fixes on its first try (skipped if it writes no code)."""

    name = "code"
    needs_baseline = False
    needs_judge = False

    def run(self, ctx: EvalContext) -> dict[str, Any]:
        config = ctx.config
        code = CodeSuiteConfig(seed=config.seed)
        options = replace(config.generation, max_new_tokens=code.max_new_tokens, temperature=code.temperature)
        runs = GenerationRuns(
            {"marked": config.model_dir}, ctx.runs.cache_dir, options, config.backend, config.progress
        )

        def generate(prompts: list[str]) -> list[str]:
            return [r["response"] for r in runs.run("code", "marked", prompts)]

        return run_code_suite(generate, code)

    def render(self, section: Mapping[str, Any], page: Page) -> str:
        if section.get("skipped"):
            body = note(f"Skipped: {section['skipped']}")
        else:
            pass_at_1 = pct(section.get("pass_at_1"), "suites.code.pass_at_1")
            body = table(["pass@1", "n"], [[(pass_at_1, True), (count(section.get("n")), True)]])
        return html_section(
            "code",
            "Code repair",
            "HumanEvalFix pass@1: share of buggy functions the model fixes on its first try.",
            body,
        )
