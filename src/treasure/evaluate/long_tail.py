"""long tail: per-prompt metrics split by how frequent the prompt's marker values were in training.

Each prompt's value of a marker (annotated from its reference answer) falls in the head, torso or tail
bucket of the model dir's stats.json (head ≥ 5% of training rows, tail < 1%; a value never seen in
training is tail). Rows give the marked and baseline figure per bucket and their delta.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
