"""The marker-prediction suite (the paper's Table 7 metric): measured by `treasure.evaluate.prediction`
on the marked model's plain answers, shown as accuracy bars per marker."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure

from treasure.evaluate.prediction import run_marker_prediction
from treasure.evaluate.render import (
    Page,
    ReportConfig,
    figure,
    html_section,
    img,
    mpl_text,
    note,
    number,
    pct,
)

if TYPE_CHECKING:
    from treasure.evaluate.context import EvalContext


def _bars(prediction: Mapping[str, Any], config: ReportConfig) -> str | None:
    per_marker = prediction.get("per_marker") or {}
    if not per_marker:
        return None
    names = list(per_marker)
    values = [
        100 * number(per_marker[n].get("accuracy"), f"suites.marker_prediction.per_marker.{n}.accuracy")
        for n in names
    ]

    def draw(fig: Figure) -> None:
        ax = fig.subplots()
        bars = ax.bar(range(len(names)), values, color="#4c72b0")
        ax.bar_label(bars, labels=[f"{v:.0f}%" for v in values], fontsize=8)
        ax.set_xticks(range(len(names)), [mpl_text(n, config.max_label_chars) for n in names], rotation=20)
        ax.set_ylim(0, 105)
        ax.set_ylabel("accuracy (%)")
        mean = prediction.get("mean_accuracy")
        if mean is not None:
            ax.axhline(
                100 * number(mean, "suites.marker_prediction.mean_accuracy"),
                color="#c44e52",
                linestyle="--",
                linewidth=1,
                label="mean",
            )
            ax.legend(fontsize=8)

    return figure(draw, 3.0, config)


class MarkerPrediction:
    """How often the markers the model writes for itself equal the labels of the reference answer."""

    name = "marker-prediction"
    needs_baseline = False
    needs_judge = False

    def run(self, ctx: EvalContext) -> dict[str, Any]:
        written = [r["markers"] for r in ctx.plain("marked")]
        return run_marker_prediction(written, ctx.labels, ctx.config.prediction_markers)

    def render(self, section: Mapping[str, Any], page: Page) -> str:
        png = _bars(section, page.config)
        mean = section.get("mean_accuracy")
        return html_section(
            "marker-prediction",
            "Marker prediction",
            "How often the markers the model infers for itself in conditioning mode equal the annotators' "
            "labels of the reference answer, per marker.",
            f"<p>Mean accuracy: {pct(mean, 'suites.marker_prediction.mean_accuracy')}</p>"
            if mean is not None
            else "",
            img(png, "marker prediction accuracy") if png else note("No markers were predicted."),
        )
