"""Embedded task/domain classifier: logistic regression over MiniLM embeddings, trained on the shipped seed
set (class descriptions + labelled examples, `resources/classifier_seed.jsonl.gz`).

Weights live in `resources/classifier.npz` (one softmax layer per marker); `train_classifier` rebuilds
them. Below `threshold` confidence a row gets the fallback: `Unspecified` when the marker has that value,
else null (counted as unlabelled).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from treasure import io
from treasure.annotate.base import Batch
from treasure.annotate.embedding import EMBEDDING, EmbeddingConfig, embed, row_text
from treasure.errors import TreasureError
from treasure.knobs import knob
from treasure.taxonomy import Taxonomy

FALLBACK = "Unspecified"
MARKERS = ("task", "domain")


def resource_path(name: str) -> Path:
    """Path of a file in `treasure/resources/`."""
    return Path(str(resources.files("treasure").joinpath(f"resources/{name}")))


@dataclass(frozen=True)
class ClassifierConfig:
    """Weights file, confidence threshold per marker, and the training regularisation."""

    weights: Path = field(default_factory=lambda: resource_path("classifier.npz"))
    threshold: float = field(default=0.35, metadata=knob("Below this confidence: Unspecified / null."))
    markers: tuple[str, ...] = MARKERS


def load_seed(path: Path | None = None) -> list[dict[str, Any]]:
    """Rows of the seed set: `prompt`, `response`, `task` and/or `domain`, `origin`."""
    return io.read_records(path or resource_path("classifier_seed.jsonl.gz"))


@dataclass(frozen=True)
class TrainClassifierConfig:
    """Seed set in, weights out; `c` is the inverse L2 strength of scikit-learn's LogisticRegression."""

    seed_path: Path | None = field(
        default=None, metadata=knob("Seed set JSONL(.gz) (default: the shipped one).", "--seed-set")
    )
    out: Path = field(
        default=Path("classifier.npz"),
        metadata=knob(
            "Weights file to write (default: ./classifier.npz; the shipped one is never the default).",
            "--output",
            "-o",
        ),
    )
    c: float = field(default=4.0, metadata=knob("Inverse L2 strength."))
    seed: int = field(default=0, metadata=knob("Seed of the solver."))
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)


def train_classifier(config: TrainClassifierConfig, taxonomy: Taxonomy | None = None) -> dict[str, Any]:
    """Fit one multinomial logistic regression per marker on the seed set; save weights; return counts."""
    from sklearn.linear_model import LogisticRegression

    tax = taxonomy or Taxonomy.default()
    rows = load_seed(config.seed_path)
    vectors = embed(
        [row_text(r["prompt"], r.get("response"), config.embedding.max_chars) for r in rows], config.embedding
    )
    arrays: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for marker in MARKERS:
        index = [i for i, r in enumerate(rows) if r.get(marker) in tax[marker].values]
        labels = [rows[i][marker] for i in index]
        model = LogisticRegression(C=config.c, max_iter=2000, random_state=config.seed)
        model.fit(vectors[index], labels)
        arrays[f"{marker}_coef"] = model.coef_.astype(np.float32)
        arrays[f"{marker}_intercept"] = model.intercept_.astype(np.float32)
        arrays[f"{marker}_classes"] = np.array(model.classes_, dtype=str)
        counts[marker] = len(index)
    config.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(config.out, **arrays)
    return counts


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class Classifier:
    """Step producing `task` and `domain` from the shared `_embedding` column."""

    name = "classifier"

    def __init__(self, taxonomy: Taxonomy, config: ClassifierConfig | None = None):
        self.config = config or ClassifierConfig()
        if not self.config.weights.exists():
            raise TreasureError(
                f"{self.config.weights}: weights not found; run `treasure annotate-train classifier`"
            )
        data = np.load(self.config.weights)
        self.layers = {}
        for marker in self.config.markers:
            if marker not in taxonomy:
                continue
            classes = [str(c) for c in data[f"{marker}_classes"]]
            unknown = [c for c in classes if c not in taxonomy[marker].values]
            if unknown:
                raise TreasureError(
                    f"{self.config.weights}: {marker} classes {unknown} are not in the taxonomy"
                )
            fallback = FALLBACK if FALLBACK in taxonomy[marker].values else None
            self.layers[marker] = (data[f"{marker}_coef"], data[f"{marker}_intercept"], classes, fallback)
        self.produces = tuple(self.layers)
        self.version = f"logreg/{self.config.weights.name}/t{self.config.threshold}"

    def probabilities(self, marker: str, vectors: np.ndarray) -> tuple[list[str], np.ndarray]:
        """(classes, probabilities per row) for one marker."""
        coef, intercept, classes, _ = self.layers[marker]
        return classes, _softmax(vectors @ coef.T + intercept)

    def __call__(self, batch: Mapping[str, list[Any]]) -> Batch:
        vectors = np.stack(batch[EMBEDDING]).astype(np.float32)
        out: Batch = {}
        for marker, (_, _, classes, fallback) in self.layers.items():
            _, probs = self.probabilities(marker, vectors)
            best = probs.argmax(axis=1)
            out[marker] = [
                classes[b] if probs[i, b] >= self.config.threshold else fallback for i, b in enumerate(best)
            ]
        return out
