"""`OUTPUT.stats.json`: frequency of every marker value and its head/torso/tail bucket (see CONTRACTS)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import median
from typing import Any

import datasets

from treasure.taxonomy import Taxonomy


@dataclass(frozen=True)
class StatsConfig:
    """A value is head when its share of rows is ≥ `head_min_share`, tail when < `tail_max_share`."""

    head_min_share: float = 0.05
    tail_max_share: float = 0.01


def long_tail_bucket(share: float, config: StatsConfig) -> str:
    """'head', 'torso' or 'tail' for a share of rows."""
    if share >= config.head_min_share:
        return "head"
    return "tail" if share < config.tail_max_share else "torso"


def _summary(numbers: list[float]) -> dict[str, float]:
    return {
        "min": min(numbers),
        "median": median(numbers),
        "mean": round(sum(numbers) / len(numbers), 4),
        "max": max(numbers),
    }


def compute_stats(
    ds: datasets.Dataset,
    tax: Taxonomy,
    config: StatsConfig | None = None,
    thresholds: Mapping[str, Any] | None = None,
    annotators: Mapping[str, Any] | None = None,
    timings_s: Mapping[str, float] | None = None,
    unlabelled: Mapping[str, int] | None = None,
    rejected: int = 0,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Marker frequencies (values with count/share/bucket, or a numeric summary) plus run metadata."""
    config = config or StatsConfig()
    n_rows = len(ds)
    markers: dict[str, Any] = {}
    for name, marker in tax.markers.items():
        if name not in ds.column_names:
            continue
        column = [v for v in ds[name] if v is not None and not (isinstance(v, float) and math.isnan(v))]
        entry: dict[str, Any] = {"n_labelled": len(column)}
        if marker.kind in ("categorical", "ordinal"):
            counts = Counter(str(v) for v in column)
            order = [v for v in marker.values if v in counts] + sorted(set(counts) - set(marker.values))
            entry["values"] = {}
            for value in order:
                share = round(counts[value] / n_rows, 4) if n_rows else 0.0
                entry["values"][value] = {
                    "count": counts[value],
                    "share": share,
                    "bucket": long_tail_bucket(counts[value] / n_rows, config),
                }
        elif column:
            entry["summary"] = _summary(column)
        markers[name] = entry
    out: dict[str, Any] = {
        "n_rows": n_rows,
        "buckets": {"head_min_share": config.head_min_share, "tail_max_share": config.tail_max_share},
        "thresholds": {k: list(v) for k, v in (thresholds or {}).items()},
        "markers": markers,
        "annotators": dict(annotators or {}),
        "timings_s": {k: round(v, 3) for k, v in (timings_s or {}).items()},
        "unlabelled": dict(unlabelled or {}),
        "rejected": rejected,
    }
    out.update(extra or {})
    return out
