"""The adherence suite: measured by `treasure.evaluate.adherence`, shown as a heatmap of the share of
answers with the requested marker value, example answers, and (with length-instruct's) answer lengths."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure

from treasure.evaluate.adherence import run_adherence
from treasure.evaluate.prompts import sample
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
from treasure.evaluate.suites.lengths import lengths_section

if TYPE_CHECKING:
    from treasure.evaluate.context import EvalContext


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
