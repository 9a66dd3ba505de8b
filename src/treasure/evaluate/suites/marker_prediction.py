"""The marker-prediction suite (the paper's Table 7 metric): in conditioning mode, how often the markers
the model writes for itself in its plain answers equal the annotators' labels of the prompt's reference
answer, per category; shown as accuracy bars per marker."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure

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


def run_marker_prediction(
    written: Sequence[dict[str, Any]], labels: Sequence[dict[str, Any]], markers: Sequence[str]
) -> dict[str, Any]:
    """Accuracy per marker over prompts whose reference has a label (a marker the model did not write
    counts as wrong)."""
    per_marker: dict[str, dict[str, Any]] = {}
    for marker in markers:
        pairs = [
            (w.get(marker), lab[marker])
            for w, lab in zip(written, labels, strict=True)
            if lab.get(marker) is not None
        ]
        if pairs:
            hits = sum(1 for guess, gold in pairs if guess is not None and str(guess) == str(gold))
            per_marker[marker] = {"accuracy": round(hits / len(pairs), 4), "n": len(pairs)}
    accuracies = [v["accuracy"] for v in per_marker.values()]
    return {
        "per_marker": per_marker,
        "mean_accuracy": round(sum(accuracies) / len(accuracies), 4) if accuracies else None,
    }


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
