"""marker prediction (the paper's Table 7 metric): in conditioning mode, how often the markers the model
writes for itself equal the annotators' labels of the prompt's reference answer, per category."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


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
