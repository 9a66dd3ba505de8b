"""Quality: the embedded ridge regressor over MiniLM embeddings (default), or any HF reward model dir.

The regressor is trained on the real ChatGPT (AlpaGasus) quality scores the long-is-more and
Evol-Instruct files carry (`train_quality`, weights in `resources/quality.npz`). A score the data already
carries always wins (the pipeline merges given values). Scores are rounded to 2 decimals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from treasure.annotate.base import Batch, text_of
from treasure.annotate.classifier import resource_path
from treasure.annotate.columns import PRODUCES
from treasure.annotate.embedding import EMBEDDING, EmbeddingConfig, embed, row_text
from treasure.errors import TreasureError
from treasure.knobs import knob


@dataclass(frozen=True)
class QualityConfig:
    """Embedded regressor weights, or `reward_model` (an HF sequence-classification dir) instead."""

    weights: Path = field(default_factory=lambda: resource_path("quality.npz"))
    reward_model: Path | None = field(
        default=None, metadata=knob("HF sequence-classification dir for quality (default: embedded).")
    )
    reward_batch_size: int = field(default=8, metadata=knob("Rows per reward-model batch."))
    reward_max_tokens: int = field(default=512, metadata=knob("Reward-model input cut, in tokens."))


class QualityRegressor:
    """Step producing `quality` from the shared `_embedding` column (ridge regression)."""

    name = "quality"
    produces = PRODUCES["quality"]

    def __init__(self, config: QualityConfig | None = None):
        self.config = config or QualityConfig()
        if not self.config.weights.exists():
            raise TreasureError(
                f"{self.config.weights}: weights not found; run `treasure annotate-train quality`"
            )
        data = np.load(self.config.weights)
        self.coef, self.intercept = data["coef"].astype(np.float32), float(data["intercept"])
        self.version = f"ridge/{self.config.weights.name}"

    def __call__(self, batch: Mapping[str, list[Any]]) -> Batch:
        scores = np.stack(batch[EMBEDDING]).astype(np.float32) @ self.coef + self.intercept
        return {"quality": [round(float(s), 2) for s in scores]}


@dataclass(frozen=True)
class TrainQualityConfig:
    """Training data = bundled rows with a given `quality`; `holdout` share is kept out for the report."""

    out: Path = field(
        default=Path("quality.npz"),
        metadata=knob(
            "Weights file to write (default: ./quality.npz; the shipped one is never the default).",
            "--output",
            "-o",
        ),
    )
    alpha: float = field(default=10.0, metadata=knob("Ridge regularisation."))
    holdout: float = field(default=0.2, metadata=knob("Share of scored rows held out for the report."))
    seed: int = field(default=0, metadata=knob("Seed of the train/held-out split."))
    limit: int | None = field(default=None, metadata=knob("Use at most this many scored rows."))
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)


def train_quality(config: TrainQualityConfig) -> dict[str, Any]:
    """Fit ridge regression on bundled scored rows; report held-out Pearson/Spearman; save the weights."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.linear_model import Ridge

    from treasure.bundled import load_bundled

    ds, _ = load_bundled()
    ds = ds.filter(lambda q: q is not None, input_columns="quality")
    ds = ds.shuffle(seed=config.seed)
    if config.limit:
        ds = ds.select(range(min(config.limit, len(ds))))
    vectors = embed(
        [
            row_text(p, r, config.embedding.max_chars)
            for p, r in zip(ds["prompt"], ds["response"], strict=True)
        ],
        config.embedding,
    )
    scores = np.asarray(ds["quality"], dtype=np.float64)
    cut = int(len(ds) * (1 - config.holdout))
    model = Ridge(alpha=config.alpha).fit(vectors[:cut], scores[:cut])
    held = model.predict(vectors[cut:])
    report = {
        "n_train": cut,
        "n_holdout": len(ds) - cut,
        "pearson": round(float(pearsonr(held, scores[cut:]).statistic), 4),
        "spearman": round(float(spearmanr(held, scores[cut:]).statistic), 4),
        "mae": round(float(np.abs(held - scores[cut:]).mean()), 4),
        "baseline_mae": round(float(np.abs(scores[:cut].mean() - scores[cut:]).mean()), 4),
    }
    final = Ridge(alpha=config.alpha).fit(vectors, scores)
    config.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(config.out, coef=final.coef_.astype(np.float32), intercept=np.float64(final.intercept_))
    return report


class RewardModelScorer:
    """Step producing `quality` with any HF `AutoModelForSequenceClassification` dir (first logit).

    The (prompt, response) pair goes through the tokenizer's chat template when it has one, else it is
    encoded as a text pair. Rows are scored in batches of `reward_batch_size`.
    """

    name = "quality"
    produces = PRODUCES["quality"]

    def __init__(self, config: QualityConfig):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if config.reward_model is None or not Path(config.reward_model).is_dir():
            raise TreasureError(f"{config.reward_model}: reward model dir not found")
        self.config = config
        self.tokenizer = AutoTokenizer.from_pretrained(config.reward_model)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForSequenceClassification.from_pretrained(config.reward_model).eval()
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.version = f"reward-model/{Path(config.reward_model).name}"

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """Reward (first logit) of each (prompt, response), rounded to 2 decimals."""
        import torch

        out: list[float] = []
        size = self.config.reward_batch_size
        for start in range(0, len(prompts), size):
            p, r = prompts[start : start + size], responses[start : start + size]
            if self.tokenizer.chat_template:
                texts = [
                    self.tokenizer.apply_chat_template(
                        [{"role": "user", "content": a}, {"role": "assistant", "content": b}], tokenize=False
                    )
                    for a, b in zip(p, r, strict=True)
                ]
                enc = self.tokenizer(
                    texts,
                    padding=True,
                    truncation=True,
                    max_length=self.config.reward_max_tokens,
                    return_tensors="pt",
                )
            else:
                enc = self.tokenizer(
                    list(p),
                    list(r),
                    padding=True,
                    truncation=True,
                    max_length=self.config.reward_max_tokens,
                    return_tensors="pt",
                )
            with torch.no_grad():
                logits = self.model(**enc).logits
            out.extend(round(float(v), 2) for v in logits[:, 0])
        return out

    def __call__(self, batch: Mapping[str, list[Any]]) -> Batch:
        prompts = [text_of(p) for p in batch["prompt"]]
        responses = [text_of(r) for r in batch["response"]]
        return {"quality": self.score(prompts, responses)}
