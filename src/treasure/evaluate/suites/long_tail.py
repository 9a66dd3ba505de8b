"""The long-tail suite: per-prompt metrics (win-rate's outcomes, length-instruct's violations) split by how
frequent the prompt's marker values were in training, shown as bars and a table.

Each prompt's value of a marker (annotated from its reference answer) falls in the head, torso or tail
bucket of the model dir's stats.json (head ≥ 5% of training rows, tail < 1%; a value never seen in
training is tail). Rows give the marked and baseline figure per bucket and their delta.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from treasure.evaluate.render import (
    Page,
    ReportConfig,
    count,
    esc,
    figure,
    html_section,
    img,
    mpl_text,
    note,
    number,
    pct,
    points,
    table,
)
from treasure.evaluate.suites.length_instruct import result as length_instruct
from treasure.evaluate.suites.win_rate import verdicts

if TYPE_CHECKING:
    from treasure.evaluate.context import EvalContext

BUCKETS: tuple[str, ...] = ("head", "torso", "tail")


def bucket_of(stats: dict[str, Any], marker: str, value: Any) -> str | None:
    """head/torso/tail of `value` in training (None when the prompt has no label)."""
    if value is None:
        return None
    values = stats.get("markers", {}).get(marker, {}).get("values", {})
    entry = values.get(str(value))
    return entry["bucket"] if entry else "tail"


def _mean(values: Sequence[float]) -> float:
    return round(sum(values) / len(values), 4)


def split_rows(
    metric: str,
    marked: Sequence[float],
    baseline: Sequence[float],
    labels: Sequence[dict[str, Any]],
    markers: Sequence[str],
    stats: dict[str, Any],
) -> list[dict[str, Any]]:
    """One row per (marker, bucket) with data: mean of `marked` and `baseline` over its prompts."""
    rows = []
    for marker in markers:
        buckets = [bucket_of(stats, marker, label.get(marker)) for label in labels]
        for bucket in BUCKETS:
            index = [i for i, b in enumerate(buckets) if b == bucket]
            if not index:
                continue
            m, b = _mean([marked[i] for i in index]), _mean([baseline[i] for i in index])
            rows.append(
                {
                    "marker": marker,
                    "bucket": bucket,
                    "metric": metric,
                    "marked": m,
                    "baseline": b,
                    "delta": round(m - b, 4),
                    "n": len(index),
                }
            )
    return rows


_BUCKET_COLOURS = {"head": "#4c72b0", "torso": "#dd8452", "tail": "#55a868"}


def _grouped_bars(
    ax: Axes, groups: Sequence[str], series: Mapping[str, Sequence[float]], colours: Mapping[str, str]
) -> None:
    """Bars for several series side by side within each group; NaN bars are left out."""
    width = 0.8 / max(1, len(series))
    for k, (name, values) in enumerate(series.items()):
        xs = [g + (k - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, values, width=width, label=name, color=colours.get(name))
    ax.set_xticks(range(len(groups)), groups, rotation=20, ha="right")


def _deltas(long_tail: Mapping[str, Any], config: ReportConfig) -> str | None:
    rows = long_tail.get("rows") or []
    if not rows:
        return None
    metrics: list[str] = []
    for row in rows:
        if row["metric"] not in metrics:
            metrics.append(row["metric"])

    def draw(fig: Figure) -> None:
        axes = fig.subplots(len(metrics), 1, squeeze=False)[:, 0]
        for ax, metric in zip(axes, metrics, strict=True):
            chosen = [(i, r) for i, r in enumerate(rows) if r["metric"] == metric]
            markers = list(dict.fromkeys(str(r["marker"]) for _, r in chosen))
            buckets = [b for b in BUCKETS if any(r["bucket"] == b for _, r in chosen)]
            buckets += sorted({str(r["bucket"]) for _, r in chosen} - set(buckets))
            series = {b: [math.nan] * len(markers) for b in buckets}
            for i, row in chosen:
                delta = row.get("delta")
                if delta is None and row.get("marked") is not None and row.get("baseline") is not None:
                    delta = row["marked"] - row["baseline"]
                if delta is not None:
                    value = 100 * number(delta, f"suites.long_tail.rows[{i}].delta")
                    series[str(row["bucket"])][markers.index(str(row["marker"]))] = value
            _grouped_bars(ax, [mpl_text(m, config.max_label_chars) for m in markers], series, _BUCKET_COLOURS)
            ax.axhline(0, color="black", linewidth=0.8)
            ax.set_title(mpl_text(metric, config.max_label_chars))
            ax.set_ylabel("marked − baseline (points)")
            ax.legend(title="bucket", fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))

    return figure(draw, 2.8 * len(metrics) + 0.4, config)


class LongTail:
    """Marked vs baseline per head / torso / tail bucket of training frequency."""

    name = "long-tail"
    needs_baseline = True
    needs_judge = True

    def run(self, ctx: EvalContext) -> dict[str, Any]:
        config = ctx.config
        outcomes = verdicts(ctx).outcomes
        rows = split_rows(
            "win_rate", outcomes, [0.5] * len(outcomes), ctx.labels, config.long_tail_markers, ctx.stats
        )
        if "length-instruct" in config.suites:
            violations = length_instruct(ctx).violations
            rows += split_rows(
                "violation_rate",
                [float(v) for v in violations["fixed"]],
                [float(v) for v in violations["baseline"]],
                ctx.labels,
                config.long_tail_markers,
                ctx.stats,
            )
        return {
            "rows": rows,
            "note": "win_rate: marked vs baseline (50% = parity); violation_rate: +fixed vs Baseline",
        }

    def render(self, section: Mapping[str, Any], page: Page) -> str:
        rows = section.get("rows") or []
        png = _deltas(section, page.config)
        table_rows = []
        for i, row in enumerate(rows):
            field = f"suites.long_tail.rows[{i}]"
            table_rows.append(
                [
                    (esc(row.get("marker", "")), False),
                    (esc(row.get("bucket", "")), False),
                    (esc(row.get("metric", "")), False),
                    (pct(row.get("marked"), field + ".marked"), True),
                    (pct(row.get("baseline"), field + ".baseline"), True),
                    (points(row.get("delta"), field + ".delta"), True),
                    (count(row.get("n")), True),
                ]
            )
        return html_section(
            "long-tail",
            "Long tail",
            "Each metric split by how often the marker values involved occur in training (by default "
            "head ≥ 5%, tail < 1%), with the gain of the marked model over the baseline in each bucket.",
            img(png, "long-tail deltas") if png else note("No long-tail rows were measured."),
            table(["Marker", "Bucket", "Metric", "Marked", "Baseline", "Delta", "n"], table_rows)
            if rows
            else "",
        )
