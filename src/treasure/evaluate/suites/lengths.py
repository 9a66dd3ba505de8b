"""The report's "Length distributions" section, drawn from two suites' sections (it is not a suite):
adherence's words per requested length bucket and length-instruct's words over the limit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from treasure.evaluate.render import ReportConfig, figure, html_section, img, mpl_text, note, number


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
            limit = number(item["limit"], field + ".limit")
            if limit > 0:
                ratios.setdefault(str(name), []).append(number(item["words"], field + ".words") / limit)
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
                    [number(w, f"suites.adherence.lengths.{mode}.{b}") for w in lengths.get(b, [])]
                    for b in buckets
                ]
                offset = (k - (len(by_mode) - 1) / 2) * width
                handle = _box(ax, data, [g + offset for g in range(len(buckets))], width * 0.9, palette(k))
                if handle is not None:
                    handles.append(handle)
                    names.append(mpl_text(mode, config.max_label_chars))
            ax.set_xticks(range(len(buckets)), [mpl_text(b, config.max_label_chars) for b in buckets])
            ax.set_xlabel("requested length bucket")
            ax.set_ylabel("words in the answer")
            ax.set_title("Adherence runs")
            ax.legend(handles, names, fontsize=8)
        if ratios:
            ax = axes.pop(0)
            names = list(ratios)
            for k, name in enumerate(names):
                _box(ax, [ratios[name]], [k], 0.6, palette(k))
            ax.set_xticks(range(len(names)), [mpl_text(n, config.max_label_chars) for n in names])
            ax.axhline(1.0, color="#c44e52", linestyle="--", linewidth=1, label="limit N")
            ax.set_ylabel("words / N")
            ax.set_title("Length-instruct: words over the limit")
            ax.legend(fontsize=8)

    return figure(draw, 3.4, config)


def lengths_section(
    adherence: Mapping[str, Any] | None, length_instruct: Mapping[str, Any] | None, config: ReportConfig
) -> str:
    """Box plots of answer lengths from either section or both."""
    png = _length_figure(adherence, length_instruct, config)
    return html_section(
        "lengths",
        "Length distributions",
        "Words per answer for each requested length bucket, and for the length-instruct rows the ratio of "
        "words to the limit N (above the dashed line at 1.0 is a violation).",
        img(png, "length distributions") if png else note("No lengths were recorded."),
    )
