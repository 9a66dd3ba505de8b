"""The language-request suite (the paper's language protocol): the user asks for a language in plain words.

Each English prompt gets one sentence appended, e.g. "Respond in Spanish." (the phrasing is drawn per
prompt from `REQUEST_TEMPLATES` with a seeded RNG). No marker is given: the marked model runs in
conditioning mode and must infer its `language` marker from the request itself; the baseline model gets
the same prompts. An answer passes when the language annotator (the one adherence re-annotates with,
`treasure.evaluate.reannotate`) detects the requested language. Pass rates per language and
overall, Baseline and TreasureMarked side by side, and the difference in points.

The prompts are adherence's sample (`n_adherence_prompts`, same seed and salt), so the TreasureMarked row
reads against adherence's `language=X` controlling cells on the same prompts when both suites run.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from treasure.evaluate.prompts import sample
from treasure.evaluate.reannotate import reannotate
from treasure.evaluate.render import Page, count, esc, html_section, note, pct, points, table
from treasure.evaluate.suite import section_key

if TYPE_CHECKING:
    from treasure.evaluate.context import EvalContext

REQUEST_TEMPLATES: tuple[str, ...] = (
    "Respond in {lang}.",
    "Answer in {lang}.",
    "Please write your answer in {lang}.",
)
ROWS: tuple[tuple[str, str, str], ...] = (  # (row name, model, label)
    ("baseline", "baseline", "Baseline"),
    ("conditioning", "marked", "TreasureMarked"),
)
OVERALL = "overall"


def request_prompts(prompts: Sequence[str], language: str, seed: int) -> tuple[list[str], list[str]]:
    """Each prompt with a request for `language` appended after a blank line, and the request sentences
    (one phrasing of `REQUEST_TEMPLATES` per prompt, drawn with a RNG seeded by `seed` and `language`)."""
    rng = random.Random(f"{seed}:language-request:{language}")
    requests = [rng.choice(REQUEST_TEMPLATES).format(lang=language) for _ in prompts]
    return [f"{p}\n\n{r}" for p, r in zip(prompts, requests, strict=True)], requests


def pass_rate(detected: Sequence[str | None], language: str) -> float:
    """Share of answers detected as `language` (an undetected answer fails)."""
    return round(sum(d == language for d in detected) / len(detected), 4) if detected else 0.0


def run_language_request(ctx: EvalContext) -> dict[str, Any]:
    """Answer every prompt + request with both models, detect each answer's language, count passes."""
    config, tax = ctx.config, ctx.taxonomy
    languages = [str(tax.canonical("language", raw)) for raw in config.request_languages]
    prompts = sample(ctx.pool, config.n_adherence_prompts, config.seed, "adherence")
    requests: dict[str, list[str]] = {}
    detected: dict[str, dict[str, list[str | None]]] = {name: {} for name, _, _ in ROWS}
    for language in languages:
        texts, requests[language] = request_prompts([p.prompt for p in prompts], language, config.seed)
        for name, model, _ in ROWS:
            answers = ctx.runs.run(f"lang-{model}-{language}", model, texts)
            labels = reannotate(texts, [a["response"] for a in answers], ["language"], tax)
            detected[name][language] = [label.get("language") for label in labels]
    rows = []
    for name, _, label in ROWS:
        by_language = detected[name]
        everything = [(d, lang) for lang in languages for d in by_language[lang]]
        rates = {lang: pass_rate(by_language[lang], lang) for lang in languages}
        rates[OVERALL] = round(sum(d == lang for d, lang in everything) / len(everything), 4)
        ns = {lang: len(by_language[lang]) for lang in languages}
        ns[OVERALL] = len(everything)
        rows.append({"name": name, "label": label, "pass_rate": rates, "n": ns})
    base, marked = rows[0]["pass_rate"], rows[1]["pass_rate"]
    return {
        "languages": languages,
        "templates": list(REQUEST_TEMPLATES),
        "prompt_ids": [p.id for p in prompts],
        "rows": rows,
        "delta": {key: round(marked[key] - base[key], 4) for key in [*languages, OVERALL]},
        "requests": requests,
        "detected": detected,
    }


def table_rows(section: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Column keys (languages, then overall) and the rows as strings: label, a pass rate per column, n;
    then the difference TreasureMarked − Baseline in points."""
    keys = [*(section.get("languages") or []), OVERALL]
    out = []
    for i, row in enumerate(section.get("rows") or []):
        field = f"suites.language_request.rows[{i}]"
        rates, ns = row.get("pass_rate") or {}, row.get("n") or {}
        cells = [pct(rates.get(k), f"{field}.pass_rate.{k}") for k in keys]
        out.append([str(row.get("label") or row.get("name", "")), *cells, count(ns.get(OVERALL))])
    delta = section.get("delta")
    if out and delta:
        cells = [points(delta.get(k), f"suites.language_request.delta.{k}") for k in keys]
        out.append(["Δ TreasureMarked − Baseline", *cells, ""])
    return keys, out


def paper_table(metrics: Mapping[str, Any]) -> Table | None:
    """The language-request table for the terminal, or None when the suite is not in `metrics`."""
    section = (metrics.get("suites") or {}).get(section_key(LanguageRequest.name))
    if not isinstance(section, Mapping):
        return None
    keys, rows = table_rows(section)
    out = Table(title="Language requested in the prompt (pass rate)")
    out.add_column("Model")
    for key in keys:
        out.add_column(key, justify="right")
    out.add_column("n", justify="right")
    for row in rows:
        out.add_row(*(Text(cell) for cell in row))  # Text: never read as rich markup
    if not rows:
        out.caption = "no rows were measured"
    return out


class LanguageRequest:
    """Share of answers in the language the prompt asks for in plain words, Baseline vs TreasureMarked."""

    name = "language-request"
    needs_baseline = True
    needs_judge = False

    def run(self, ctx: EvalContext) -> dict[str, Any]:
        with ctx.timed("language-request"):
            return run_language_request(ctx)

    def render(self, section: Mapping[str, Any], page: Page) -> str:
        keys, rows = table_rows(section)
        body = (
            table(
                ["Model", *keys, "n"],
                [[(esc(r[0]), False), *((cell, True) for cell in r[1:])] for r in rows],
            )
            if rows
            else note("No rows were measured.")
        )
        templates = section.get("templates") or []
        return html_section(
            "language-request",
            "Language requested in the prompt",
            "Each English prompt ends with a request for a language in plain words; no marker is given (the "
            "marked model infers its markers). Pass rate: share of answers the language annotator detects "
            "as the requested language; the last row is the difference in percentage points.",
            body,
            "<p>Requests: " + esc(" · ".join(str(t) for t in templates)) + "</p>" if templates else "",
        )
