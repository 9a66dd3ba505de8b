"""Building blocks of the HTML report, shared by the suites' `render`: numbers, tables, figures.

All text is HTML-escaped (marker values and judge names can come from model output), figure labels are
made safe for matplotlib, and figures are embedded as base64 PNG with stable bytes.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from treasure.artifacts import METRICS, REPORT_HTML
from treasure.errors import DataError

# Figures are drawn through `Figure` directly (no pyplot state), so no GUI backend is ever needed.
_RC = {
    "font.family": "DejaVu Sans",  # bundled with matplotlib: the same glyphs on every machine
    "font.size": 9,
    "svg.hashsalt": "treasure-report",
    "path.simplify": False,
}


@dataclass(frozen=True)
class ReportConfig:
    """How the report looks: page title, figure resolution and size, label truncation."""

    title: str = "treasure evaluation report"
    dpi: int = 100
    figure_width: float = 8.0  # inches
    max_label_chars: int = 40  # longer marker values are cut with an ellipsis in figures
    filename: str = REPORT_HTML


@dataclass(frozen=True)
class Page:
    """What a suite's `render` sees besides its own section: the report settings and every suite's
    section of metrics.json by key (for a figure drawn from several suites)."""

    config: ReportConfig
    sections: Mapping[str, Mapping[str, Any]]


# ---------------------------------------------------------------- values


def number(value: Any, field: str) -> float:
    """A finite-or-NaN float from metrics, or a DataError naming the field."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(METRICS, f"expected a number, got {value!r}", field=field)
    return float(value)


def pct(value: Any, field: str) -> str:
    """A fraction 0..1 rendered as a percentage; None (not measured) renders as an en dash."""
    if value is None:
        return "–"
    value = number(value, field)
    return "–" if math.isnan(value) else f"{100 * value:.1f}%"


def points(value: Any, field: str) -> str:
    """A difference of two fractions as signed percentage points."""
    if value is None:
        return "–"
    value = number(value, field)
    return "–" if math.isnan(value) else f"{100 * value:+.1f} pts"


def count(value: Any) -> str:
    """A count, or an en dash when absent."""
    return "–" if value is None else str(value)


def mpl_text(text: Any, limit: int) -> str:
    """Text safe for a matplotlib label: `$` would start mathtext, long values are cut."""
    text = str(text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("\\", "\\\\").replace("$", r"\$")


# ---------------------------------------------------------------- figures


def _png(fig: Figure, dpi: int) -> str:
    """The figure as a base64 PNG, with no timestamp or version in its metadata (stable bytes)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None}, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def figure(draw: Callable[[Figure], None], height: float, config: ReportConfig) -> str:
    """A figure of `height` inches drawn by `draw`, as a base64 PNG."""
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(config.figure_width, height), layout="constrained")
        draw(fig)
        return _png(fig, config.dpi)


# ---------------------------------------------------------------- HTML


def esc(value: Any) -> str:
    """`value` as HTML-escaped text."""
    return html.escape(str(value), quote=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[tuple[str, bool]]]) -> str:
    """An HTML table; each cell is (already escaped text, is_numeric)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{t}</td>' if num else f"<td>{t}</td>" for t, num in row) + "</tr>"
        for row in rows
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>{body}</tbody>\n</table>"


def img(png: str, alt: str) -> str:
    """An embedded PNG."""
    return f'<img src="data:image/png;base64,{png}" alt="{esc(alt)}">'


def html_section(anchor: str, heading: str, explanation: str, *parts: str) -> str:
    """One report section: heading, explanation, then the non-empty `parts` (already HTML)."""
    body = "\n".join(p for p in parts if p)
    return f'<section id="{anchor}">\n<h2>{esc(heading)}</h2>\n<p>{esc(explanation)}</p>\n{body}\n</section>'


def note(text: str) -> str:
    """A muted remark, e.g. that a suite measured nothing."""
    return f'<p class="note">{esc(text)}</p>'


def joined(*sections: str) -> str:
    """Several sections of one suite, empty ones left out."""
    return "\n".join(s for s in sections if s)
