"""The adherence suite (controllability): ask for a marker value, re-annotate the answer, count matches;
shown as a heatmap of the share of answers with the requested marker value, example answers, and (with
length-instruct's) answer lengths.

For each (marker, value) the same prompts are answered under controlling and strict (the value also
prefilled in the model's own block); conditioning (no marker given) is the base rate: how often the
model lands on that value by itself. Each scale g of `guidance_scales` adds a column "controlling G=g":
controlling decoded with `GenerationConfig.guidance = g`. Answers are re-annotated with the annotators
that produce the marker (`evaluate.reannotate`), using the model dir's taxonomy (so `length_bucket` uses
the thresholds it was trained with). `readable_rate` counts the hits that are also readable text
(`evaluate.degenerate`: not empty, no stutter, no loop), so a value reached by repeating is not counted as
obeyed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure

from treasure.backends import GenerationConfig
from treasure.evaluate.config import MODES, EvalConfig, guidance_label
from treasure.evaluate.degenerate import degenerate
from treasure.evaluate.prompts import EvalPrompt, sample
from treasure.evaluate.reannotate import reannotate
from treasure.evaluate.render import (
    Page,
    ReportConfig,
    esc,
    figure,
    html_section,
    img,
    joined,
    mpl_text,
    note,
    number,
    table,
)
from treasure.evaluate.runs import GenerationRuns
from treasure.evaluate.suites.lengths import lengths_section
from treasure.taxonomy import Taxonomy

if TYPE_CHECKING:
    from treasure.evaluate.context import EvalContext

N_EXAMPLES = 3  # prompts whose answers under every mode and value are kept for the report
EXAMPLE_CHARS = 600


def run_adherence(
    runs: GenerationRuns, prompts: Sequence[EvalPrompt], config: EvalConfig, tax: Taxonomy
) -> dict[str, Any]:
    """Adherence cells (marker, value, mode, rate, n), answer lengths per requested length bucket, and the
    answers to the first `N_EXAMPLES` prompts under every mode and value (`examples`)."""
    texts = [p.prompt for p in prompts]
    markers = list(config.adherence_markers)
    free = runs.run("adh-conditioning", "marked", texts)
    free_labels = reannotate(texts, [r["response"] for r in free], markers, tax)
    free_readable = [degenerate(r["response"]) is None for r in free]
    cells: list[dict[str, Any]] = []
    examples = [
        {"prompt": text, "answers": [_example("conditioning", None, row)]}
        for text, row in zip(texts[:N_EXAMPLES], free, strict=False)
    ]
    # (column, run name prefix, strict, decoding options): controlling and strict as configured, then
    # controlling decoded with each guidance scale
    requested: list[tuple[str, str, bool, GenerationConfig | None]] = [
        (m, m, m == "strict", None) for m in MODES if m in config.adherence_modes
    ]
    for scale in config.guidance_scales:
        guided = replace(config.generation, guidance=scale)
        requested.append((f"controlling {guidance_label(scale)}", f"controlling-g{scale:g}", False, guided))
    modes = ["conditioning", *(column for column, *_ in requested)]
    lengths: dict[str, dict[str, list[int]]] = {mode: {} for mode in modes}
    for marker, values in config.adherence_markers.items():
        for raw in values:
            value = tax.canonical(marker, raw)
            labels = {"conditioning": free_labels}
            readable = {"conditioning": free_readable}
            for mode, run_name, strict, generation in requested:
                rows = runs.run(
                    f"adh-{run_name}-{marker}-{value}",
                    "marked",
                    texts,
                    "controlling",
                    [{marker: value}] * len(texts),
                    strict,
                    generation,
                )
                labels[mode] = reannotate(texts, [r["response"] for r in rows], markers, tax)
                readable[mode] = [degenerate(r["response"]) is None for r in rows]
                for example, row in zip(examples, rows, strict=False):
                    example["answers"].append(_example(mode, f"{marker}={value}", row))
            for mode in modes:
                hits = [label.get(marker) == value for label in labels[mode]]
                read = [hit and ok for hit, ok in zip(hits, readable[mode], strict=True)]
                cells.append(
                    {
                        "marker": marker,
                        "value": str(value),
                        "mode": mode,
                        "rate": round(sum(hits) / len(hits), 4),
                        "readable_rate": round(sum(read) / len(read), 4),
                        "n": len(hits),
                    }
                )
                if marker == "length_bucket":
                    lengths[mode][str(value)] = [int(label.get("length_tokens", 0)) for label in labels[mode]]
    lengths["conditioning"] = {"(none)": [int(label.get("length_tokens", 0)) for label in free_labels]}
    return {"cells": cells, "modes": modes, "lengths": lengths, "examples": examples}


def _example(mode: str, asked: str | None, row: dict[str, Any]) -> dict[str, Any]:
    """One readable answer for the report: what was asked, the markers written, the answer (shortened)."""
    response = row["response"]
    if len(response) > EXAMPLE_CHARS:
        response = response[:EXAMPLE_CHARS] + " …"
    return {"mode": mode, "asked": asked, "markers": row.get("markers") or {}, "response": response}


def _heatmap(adherence: Mapping[str, Any], config: ReportConfig) -> str | None:
    cells = adherence.get("cells") or []
    if not cells:
        return None
    modes = list(adherence.get("modes") or [])
    rows: list[tuple[str, str]] = []
    for cell in cells:
        if cell["mode"] not in modes:
            modes.append(cell["mode"])
        key = (str(cell["marker"]), str(cell["value"]))
        if key not in rows:
            rows.append(key)
    grid = [[math.nan] * len(modes) for _ in rows]
    for i, cell in enumerate(cells):
        rate = cell.get("rate")
        if rate is not None:
            value = 100 * number(rate, f"suites.adherence.cells[{i}].rate")
            grid[rows.index((str(cell["marker"]), str(cell["value"])))][modes.index(cell["mode"])] = value

    def draw(fig: Figure) -> None:
        ax = fig.subplots()
        image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=100, aspect="auto")
        ax.set_xticks(range(len(modes)), [mpl_text(m, config.max_label_chars) for m in modes])
        labels = [mpl_text(f"{marker}={value}", config.max_label_chars) for marker, value in rows]
        ax.set_yticks(range(len(rows)), labels)
        ax.xaxis.tick_top()
        for r, line in enumerate(grid):
            for c, value in enumerate(line):
                text = "–" if math.isnan(value) else f"{value:.0f}%"
                colour = "black" if not math.isnan(value) and value > 60 else "white"
                ax.text(c, r, text, ha="center", va="center", color=colour if text != "–" else "#888")
        fig.colorbar(image, ax=ax, label="% of outputs annotated with the requested value")

    return figure(draw, max(2.5, 0.35 * len(rows) + 1.2), config)


def _examples(adherence: Mapping[str, Any]) -> str:
    blocks = []
    for example in adherence.get("examples") or []:
        rows = [
            [
                (esc(answer.get("mode", "")), False),
                (esc(answer.get("asked") or "(nothing)"), False),
                (esc(", ".join(f"{k}={v}" for k, v in sorted((answer.get("markers") or {}).items()))), False),
                (f'<span class="answer">{esc(answer.get("response", ""))}</span>', False),
            ]
            for answer in example.get("answers") or []
        ]
        blocks.append(
            f"<h3>{esc(example.get('prompt', ''))}</h3>\n"
            + table(["mode", "asked for", "markers (model's block)", "answer"], rows)
        )
    if not blocks:
        return ""
    return html_section(
        "examples",
        "Example answers",
        "The first prompts of the adherence suite, answered by the marked model with no marker given "
        "(conditioning) and under each requested value; answers are what a user sees (no template).",
        *blocks,
    )


class Adherence:
    """Share of answers re-annotated with the requested marker value, per value and mode."""

    name = "adherence"
    needs_baseline = False
    needs_judge = False

    def run(self, ctx: EvalContext) -> dict[str, Any]:
        config = ctx.config
        with ctx.timed("adherence"):
            prompts = sample(ctx.pool, config.n_adherence_prompts, config.seed, "adherence")
            return run_adherence(ctx.runs, prompts, config, ctx.taxonomy)

    def render(self, section: Mapping[str, Any], page: Page) -> str:
        png = _heatmap(section, page.config)
        heatmap = html_section(
            "adherence",
            "Marker adherence",
            "For each requested marker value and generation mode, the share of outputs whose re-annotation "
            "equals the requested value (rows: marker=value, columns: mode).",
            img(png, "adherence heatmap") if png else note("No adherence cells were measured."),
        )
        lengths = lengths_section(section, page.sections.get("length_instruct"), page.config)
        return joined(heatmap, _examples(section), lengths)
