"""The HTML report of `treasure evaluate`: the paper-style table, figures, and a terminal table.

`write_report(metrics, out_dir)` turns a metrics.json dict into one self-contained `report.html`
(figures embedded as base64 PNG, no external files). Every suite may be absent (its section is
omitted) or empty (its section says so). All text is HTML-escaped, since marker values and judge
names can come from model output. The same metrics give the same bytes.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from rich.table import Table
from rich.text import Text

from treasure.errors import DataError
from treasure.io import atomic_write_text

# Figures are drawn through `Figure` directly (no pyplot state), so no GUI backend is ever needed.
BUCKETS = ("head", "torso", "tail")
_BUCKET_COLOURS = {"head": "#4c72b0", "torso": "#dd8452", "tail": "#55a868"}
_RC = {
    "font.family": "DejaVu Sans",  # bundled with matplotlib: the same glyphs on every machine
    "font.size": 9,
    "svg.hashsalt": "treasure-report",
    "path.simplify": False,
}
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 960px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
p.summary { color: #555; margin-top: 0; }
p.note { color: #666; font-style: italic; }
table { border-collapse: collapse; margin: 0.8em 0; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.7em; text-align: left; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; display: block; margin: 0.8em 0; }
code { background: #f5f5f5; padding: 0 0.2em; }
span.answer { white-space: pre-wrap; font-size: 0.92em; }
"""


@dataclass(frozen=True)
class ReportConfig:
    """How the report looks: page title, figure resolution and size, label truncation."""

    title: str = "treasure evaluation report"
    dpi: int = 100
    figure_width: float = 8.0  # inches
    max_label_chars: int = 40  # longer marker values are cut with an ellipsis in figures
    filename: str = "report.html"


# ---------------------------------------------------------------- values


def _number(value: Any, field: str) -> float:
    """A finite-or-NaN float from metrics, or a DataError naming the field."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError("metrics.json", f"expected a number, got {value!r}", field=field)
    return float(value)


def _pct(value: Any, field: str) -> str:
    """A fraction 0..1 rendered as a percentage; None (not measured) renders as an en dash."""
    if value is None:
        return "–"
    number = _number(value, field)
    return "–" if math.isnan(number) else f"{100 * number:.1f}%"


def _points(value: Any, field: str) -> str:
    """A difference of two fractions as signed percentage points."""
    if value is None:
        return "–"
    number = _number(value, field)
    return "–" if math.isnan(number) else f"{100 * number:+.1f} pts"


def _count(value: Any) -> str:
    return "–" if value is None else str(value)


def _mpl_text(text: Any, limit: int) -> str:
    """Text safe for a matplotlib label: `$` would start mathtext, long values are cut."""
    text = str(text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("\\", "\\\\").replace("$", r"\$")


def _suite(metrics: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    suites = metrics.get("suites") or {}
    suite = suites.get(name)
    return suite if isinstance(suite, Mapping) else None


# ---------------------------------------------------------------- figures


def _png(fig: Figure, dpi: int) -> str:
    """The figure as a base64 PNG, with no timestamp or version in its metadata (stable bytes)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None}, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(draw: Callable[[Figure], None], height: float, config: ReportConfig) -> str:
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(config.figure_width, height), layout="constrained")
        draw(fig)
        return _png(fig, config.dpi)


def _adherence_figure(adherence: Mapping[str, Any], config: ReportConfig) -> str | None:
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
            value = 100 * _number(rate, f"suites.adherence.cells[{i}].rate")
            grid[rows.index((str(cell["marker"]), str(cell["value"])))][modes.index(cell["mode"])] = value

    def draw(fig: Figure) -> None:
        ax = fig.subplots()
        image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=100, aspect="auto")
        ax.set_xticks(range(len(modes)), [_mpl_text(m, config.max_label_chars) for m in modes])
        labels = [_mpl_text(f"{marker}={value}", config.max_label_chars) for marker, value in rows]
        ax.set_yticks(range(len(rows)), labels)
        ax.xaxis.tick_top()
        for r, line in enumerate(grid):
            for c, value in enumerate(line):
                text = "–" if math.isnan(value) else f"{value:.0f}%"
                colour = "black" if not math.isnan(value) and value > 60 else "white"
                ax.text(c, r, text, ha="center", va="center", color=colour if text != "–" else "#888")
        fig.colorbar(image, ax=ax, label="% of outputs annotated with the requested value")

    return _figure(draw, max(2.5, 0.35 * len(rows) + 1.2), config)


def _grouped_bars(
    ax: Axes, groups: Sequence[str], series: Mapping[str, Sequence[float]], colours: Mapping[str, str]
) -> None:
    """Bars for several series side by side within each group; NaN bars are left out."""
    width = 0.8 / max(1, len(series))
    for k, (name, values) in enumerate(series.items()):
        xs = [g + (k - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, values, width=width, label=name, color=colours.get(name))
    ax.set_xticks(range(len(groups)), groups, rotation=20, ha="right")


def _long_tail_figure(long_tail: Mapping[str, Any], config: ReportConfig) -> str | None:
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
                    value = 100 * _number(delta, f"suites.long_tail.rows[{i}].delta")
                    series[str(row["bucket"])][markers.index(str(row["marker"]))] = value
            _grouped_bars(
                ax, [_mpl_text(m, config.max_label_chars) for m in markers], series, _BUCKET_COLOURS
            )
            ax.axhline(0, color="black", linewidth=0.8)
            ax.set_title(_mpl_text(metric, config.max_label_chars))
            ax.set_ylabel("marked − baseline (points)")
            ax.legend(title="bucket", fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))

    return _figure(draw, 2.8 * len(metrics) + 0.4, config)


def _box(ax: Axes, data: Sequence[Sequence[float]], positions: Sequence[float], width: float, colour: str):
    kept = [(d, p) for d, p in zip(data, positions, strict=True) if len(d)]
    if not kept:
        return None
    parts = ax.boxplot(
        [d for d, _ in kept],
        positions=[p for _, p in kept],
        widths=width,
        patch_artist=True,
        manage_ticks=False,
    )
    for patch in parts["boxes"]:
        patch.set_facecolor(colour)
    return parts["boxes"][0]


def _length_figure(
    adherence: Mapping[str, Any] | None, length_instruct: Mapping[str, Any] | None, config: ReportConfig
) -> str | None:
    by_mode = {m: b for m, b in ((adherence or {}).get("lengths") or {}).items() if any(b.values())}
    ratios: dict[str, list[float]] = {}
    for name, items in ((length_instruct or {}).get("lengths") or {}).items():
        for i, item in enumerate(items):
            field = f"suites.length_instruct.lengths.{name}[{i}]"
            limit = _number(item["limit"], field + ".limit")
            if limit > 0:
                ratios.setdefault(str(name), []).append(_number(item["words"], field + ".words") / limit)
    if not by_mode and not ratios:
        return None
    palette = matplotlib.colormaps["tab10"]

    def draw(fig: Figure) -> None:
        axes = list(fig.subplots(1, int(bool(by_mode)) + int(bool(ratios)), squeeze=False)[0])
        if by_mode:
            ax = axes.pop(0)
            buckets = list(dict.fromkeys(b for mode in by_mode.values() for b in mode))
            width = 0.8 / len(by_mode)
            handles, names = [], []
            for k, (mode, lengths) in enumerate(by_mode.items()):
                data = [
                    [_number(w, f"suites.adherence.lengths.{mode}.{b}") for w in lengths.get(b, [])]
                    for b in buckets
                ]
                offset = (k - (len(by_mode) - 1) / 2) * width
                handle = _box(ax, data, [g + offset for g in range(len(buckets))], width * 0.9, palette(k))
                if handle is not None:
                    handles.append(handle)
                    names.append(_mpl_text(mode, config.max_label_chars))
            ax.set_xticks(range(len(buckets)), [_mpl_text(b, config.max_label_chars) for b in buckets])
            ax.set_xlabel("requested length bucket")
            ax.set_ylabel("words in the answer")
            ax.set_title("Adherence runs")
            ax.legend(handles, names, fontsize=8)
        if ratios:
            ax = axes.pop(0)
            names = list(ratios)
            for k, name in enumerate(names):
                _box(ax, [ratios[name]], [k], 0.6, palette(k))
            ax.set_xticks(range(len(names)), [_mpl_text(n, config.max_label_chars) for n in names])
            ax.axhline(1.0, color="#c44e52", linestyle="--", linewidth=1, label="limit N")
            ax.set_ylabel("words / N")
            ax.set_title("Length-instruct: words over the limit")
            ax.legend(fontsize=8)

    return _figure(draw, 3.4, config)


def _prediction_figure(prediction: Mapping[str, Any], config: ReportConfig) -> str | None:
    per_marker = prediction.get("per_marker") or {}
    if not per_marker:
        return None
    names = list(per_marker)
    values = [
        100 * _number(per_marker[n].get("accuracy"), f"suites.marker_prediction.per_marker.{n}.accuracy")
        for n in names
    ]

    def draw(fig: Figure) -> None:
        ax = fig.subplots()
        bars = ax.bar(range(len(names)), values, color="#4c72b0")
        ax.bar_label(bars, labels=[f"{v:.0f}%" for v in values], fontsize=8)
        ax.set_xticks(range(len(names)), [_mpl_text(n, config.max_label_chars) for n in names], rotation=20)
        ax.set_ylim(0, 105)
        ax.set_ylabel("accuracy (%)")
        mean = prediction.get("mean_accuracy")
        if mean is not None:
            ax.axhline(
                100 * _number(mean, "suites.marker_prediction.mean_accuracy"),
                color="#c44e52",
                linestyle="--",
                linewidth=1,
                label="mean",
            )
            ax.legend(fontsize=8)

    return _figure(draw, 3.0, config)


# ---------------------------------------------------------------- HTML


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(headers: Sequence[str], rows: Sequence[Sequence[tuple[str, bool]]]) -> str:
    """An HTML table; each cell is (already escaped text, is_numeric)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{t}</td>' if num else f"<td>{t}</td>" for t, num in row) + "</tr>"
        for row in rows
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>{body}</tbody>\n</table>"


def _img(png: str, alt: str) -> str:
    return f'<img src="data:image/png;base64,{png}" alt="{_e(alt)}">'


def _section(anchor: str, heading: str, explanation: str, *parts: str) -> str:
    body = "\n".join(p for p in parts if p)
    return f'<section id="{anchor}">\n<h2>{_e(heading)}</h2>\n<p>{_e(explanation)}</p>\n{body}\n</section>'


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _paper_rows(metrics: Mapping[str, Any]) -> list[list[str]]:
    """The length-instruct rows as plain strings: label, violation %, win rate %, n, judge."""
    suite = _suite(metrics, "length_instruct")
    out = []
    for i, row in enumerate((suite or {}).get("rows") or []):
        field = f"suites.length_instruct.rows[{i}]"
        out.append(
            [
                str(row.get("label") or row.get("name", "")),
                _pct(row.get("violation_rate"), field + ".violation_rate"),
                _pct(row.get("win_rate"), field + ".win_rate"),
                _count(row.get("n")),
                str(row.get("judge") or ""),
            ]
        )
    return out


def _summary(metrics: Mapping[str, Any]) -> str:
    models = metrics.get("models") or {}
    parts = []
    for role in ("marked", "baseline"):
        model = models.get(role)
        if model:
            digest = str(model.get("hash") or "")[:12]
            parts.append(f"{role}: {model.get('path', '?')}" + (f" ({digest})" if digest else ""))
    if metrics.get("judge"):
        parts.append(f"judge: {metrics['judge']}")
    config = metrics.get("config") or {}
    if "seed" in config:
        parts.append(f"seed {config['seed']}")
    if metrics.get("created"):
        parts.append(str(metrics["created"]))
    if metrics.get("treasure_version"):
        parts.append(f"treasure {metrics['treasure_version']}")
    return " · ".join(parts)


def _length_instruct_section(suite: Mapping[str, Any]) -> str:
    rows = _paper_rows({"suites": {"length_instruct": suite}})
    table = (
        _table(
            ["Model", "Violation rate", "Win rate", "n", "Judge"],
            [[(_e(r[0]), False), (r[1], True), (r[2], True), (r[3], True), (_e(r[4]), False)] for r in rows],
        )
        if rows
        else _note("No rows were measured.")
    )
    rule = suite.get("limit_rule")
    return _section(
        "length-instruct",
        "Length instructions (paper table)",
        "Share of answers longer than the requested N words (lower is better) and win rate against the "
        "Baseline row's answer to the same prompt (an answer over its limit loses to one within it), for "
        "the baseline, the marked model with the instruction in the prompt, and the marked model with the "
        "instruction replaced by a fixed length marker.",
        table,
        f"<p>Limit rule: {_e(rule)}</p>" if rule else "",
    )


def _win_rate_section(suite: Mapping[str, Any]) -> str:
    pair = suite.get("marked_vs_baseline") or {}
    field = "suites.win_rate.marked_vs_baseline"
    if pair:
        cells = [(_pct(pair.get(k), f"{field}.{k}"), True) for k in ("win", "tie", "loss", "win_rate")] + [
            (_count(pair.get("n")), True)
        ]
        body = _table(["Win", "Tie", "Loss", "Win rate", "n"], [cells])
    else:
        body = _note("No pairs were judged.")
    return _section(
        "win-rate",
        "Win rate: marked vs baseline",
        "Pairwise comparison of the marked model's answers with the baseline's on the same prompts; "
        "win rate counts a tie as half a win.",
        body,
        f"<p>Judge: {_e(suite['judge'])}</p>" if suite.get("judge") else "",
    )


def _adherence_section(suite: Mapping[str, Any], config: ReportConfig) -> str:
    png = _adherence_figure(suite, config)
    return _section(
        "adherence",
        "Marker adherence",
        "For each requested marker value and generation mode, the share of outputs whose re-annotation "
        "equals the requested value (rows: marker=value, columns: mode).",
        _img(png, "adherence heatmap") if png else _note("No adherence cells were measured."),
    )


def _examples_section(suite: Mapping[str, Any]) -> str:
    blocks = []
    for example in suite.get("examples") or []:
        rows = [
            [
                (_e(answer.get("mode", "")), False),
                (_e(answer.get("asked") or "(nothing)"), False),
                (_e(", ".join(f"{k}={v}" for k, v in sorted((answer.get("markers") or {}).items()))), False),
                (f'<span class="answer">{_e(answer.get("response", ""))}</span>', False),
            ]
            for answer in example.get("answers") or []
        ]
        blocks.append(
            f"<h3>{_e(example.get('prompt', ''))}</h3>\n"
            + _table(["mode", "asked for", "markers (model's block)", "answer"], rows)
        )
    if not blocks:
        return ""
    return _section(
        "examples",
        "Example answers",
        "The first prompts of the adherence suite, answered by the marked model with no marker given "
        "(conditioning) and under each requested value; answers are what a user sees (no template).",
        *blocks,
    )


def _lengths_section(
    adherence: Mapping[str, Any] | None, length_instruct: Mapping[str, Any] | None, config: ReportConfig
) -> str:
    png = _length_figure(adherence, length_instruct, config)
    return _section(
        "lengths",
        "Length distributions",
        "Words per answer for each requested length bucket, and for the length-instruct rows the ratio of "
        "words to the limit N (above the dashed line at 1.0 is a violation).",
        _img(png, "length distributions") if png else _note("No lengths were recorded."),
    )


def _prediction_section(suite: Mapping[str, Any], config: ReportConfig) -> str:
    png = _prediction_figure(suite, config)
    mean = suite.get("mean_accuracy")
    return _section(
        "marker-prediction",
        "Marker prediction",
        "How often the markers the model infers for itself in conditioning mode equal the annotators' "
        "labels of the reference answer, per marker.",
        f"<p>Mean accuracy: {_pct(mean, 'suites.marker_prediction.mean_accuracy')}</p>"
        if mean is not None
        else "",
        _img(png, "marker prediction accuracy") if png else _note("No markers were predicted."),
    )


def _long_tail_section(suite: Mapping[str, Any], config: ReportConfig) -> str:
    rows = suite.get("rows") or []
    png = _long_tail_figure(suite, config)
    table_rows = []
    for i, row in enumerate(rows):
        field = f"suites.long_tail.rows[{i}]"
        table_rows.append(
            [
                (_e(row.get("marker", "")), False),
                (_e(row.get("bucket", "")), False),
                (_e(row.get("metric", "")), False),
                (_pct(row.get("marked"), field + ".marked"), True),
                (_pct(row.get("baseline"), field + ".baseline"), True),
                (_points(row.get("delta"), field + ".delta"), True),
                (_count(row.get("n")), True),
            ]
        )
    return _section(
        "long-tail",
        "Long tail",
        "Each metric split by how often the marker values involved occur in training (by default "
        "head ≥ 5%, tail < 1%), with the gain of the marked model over the baseline in each bucket.",
        _img(png, "long-tail deltas") if png else _note("No long-tail rows were measured."),
        _table(["Marker", "Bucket", "Metric", "Marked", "Baseline", "Delta", "n"], table_rows)
        if rows
        else "",
    )


def _code_section(suite: Mapping[str, Any]) -> str:
    if suite.get("skipped"):
        body = _note(f"Skipped: {suite['skipped']}")
    else:
        body = _table(
            ["pass@1", "n"],
            [[(_pct(suite.get("pass_at_1"), "suites.code.pass_at_1"), True), (_count(suite.get("n")), True)]],
        )
    return _section(
        "code",
        "Code repair",
        "HumanEvalFix pass@1: share of buggy functions the model fixes on its first try.",
        body,
    )


def render_html(metrics: Mapping[str, Any], config: ReportConfig | None = None) -> str:
    """The report page as one self-contained HTML string."""
    config = config or ReportConfig()
    length_instruct = _suite(metrics, "length_instruct")
    adherence = _suite(metrics, "adherence")
    sections = [
        _length_instruct_section(length_instruct) if length_instruct is not None else "",
        _win_rate_section(win) if (win := _suite(metrics, "win_rate")) is not None else "",
        _adherence_section(adherence, config) if adherence is not None else "",
        _examples_section(adherence) if adherence is not None else "",
        _lengths_section(adherence, length_instruct, config)
        if adherence is not None or length_instruct is not None
        else "",
        _prediction_section(pred, config)
        if (pred := _suite(metrics, "marker_prediction")) is not None
        else "",
        _long_tail_section(tail, config) if (tail := _suite(metrics, "long_tail")) is not None else "",
        _code_section(code) if (code := _suite(metrics, "code")) is not None else "",
    ]
    body = "\n".join(s for s in sections if s) or _note("metrics.json holds no suite results.")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(config.title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f'<h1>{_e(config.title)}</h1>\n<p class="summary">{_e(_summary(metrics))}</p>\n'
        f"{body}\n</body>\n</html>\n"
    )


def write_report(metrics: Mapping[str, Any], out_dir: Path, config: ReportConfig | None = None) -> Path:
    """Write `out_dir/report.html` atomically from a metrics.json dict and return its path."""
    config = config or ReportConfig()
    return atomic_write_text(Path(out_dir) / config.filename, render_html(metrics, config))


def paper_table(metrics: Mapping[str, Any]) -> Table:
    """The paper-style length-instruct table (Baseline / TreasureMarked / +fixed) for the terminal."""
    table = Table(title="Length instructions (AlpacaEval-LI)")
    table.add_column("Model")
    table.add_column("Violation rate", justify="right")
    table.add_column("Win rate", justify="right")
    table.add_column("n", justify="right")
    table.add_column("Judge")
    rows = _paper_rows(metrics)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # Text: model output is never read as rich markup
    if not rows:
        table.caption = "length_instruct suite not in metrics"
    return table
