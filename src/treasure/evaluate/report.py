"""The HTML report of `treasure evaluate`: the page frame around the registered suites' sections.

`write_report(metrics, out_dir)` turns a metrics.json dict into one self-contained `report.html`
(figures embedded as base64 PNG, no external files). Sections come in registry order, each drawn by its
suite's `render`; a suite absent from metrics is left out, and an empty one says so. All text is
HTML-escaped, since marker values and judge names can come from model output. The same metrics give the
same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType

from treasure.evaluate.render import Page, ReportConfig, esc, note
from treasure.evaluate.suite import section_key
from treasure.evaluate.suites import REGISTRY, language_request, length_instruct
from treasure.io import atomic_write_text

__all__ = ["ReportConfig", "paper_table", "render_html", "write_report"]

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


def paper_table(metrics: Mapping[str, Any]) -> RenderableType:
    """The paper-style tables for the terminal: length instructions (Baseline / TreasureMarked / +fixed),
    followed by the language-request pass rates when that suite ran. Without either section: the
    length-instruct table saying it is absent."""
    lengths = length_instruct.paper_table(metrics)
    languages = language_request.paper_table(metrics)
    if languages is None:
        return lengths
    if section_key(length_instruct.LengthInstruct.name) not in (metrics.get("suites") or {}):
        return languages
    return Group(lengths, languages)


def render_html(metrics: Mapping[str, Any], config: ReportConfig | None = None) -> str:
    """The report page as one self-contained HTML string."""
    config = config or ReportConfig()
    sections = {k: v for k, v in (metrics.get("suites") or {}).items() if isinstance(v, Mapping)}
    page = Page(config, sections)
    parts = [
        suite.render(sections[key], page)
        for suite in REGISTRY.values()
        if (key := section_key(suite.name)) in sections
    ]
    body = "\n".join(p for p in parts if p) or note("metrics.json holds no suite results.")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(config.title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f'<h1>{esc(config.title)}</h1>\n<p class="summary">{esc(_summary(metrics))}</p>\n'
        f"{body}\n</body>\n</html>\n"
    )


def write_report(metrics: Mapping[str, Any], out_dir: Path, config: ReportConfig | None = None) -> Path:
    """Write `out_dir/report.html` atomically from a metrics.json dict and return its path."""
    config = config or ReportConfig()
    return atomic_write_text(Path(out_dir) / config.filename, render_html(metrics, config))
