"""`AnnotateConfig`: which annotators run, how, and each annotator's own config."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Literal

from treasure.annotate.buckets import LengthBuckets
from treasure.annotate.classifier import ClassifierConfig
from treasure.annotate.embedding import EmbeddingConfig
from treasure.annotate.language import LanguageConfig
from treasure.annotate.llm import LLMConfig
from treasure.annotate.quality import QualityConfig
from treasure.annotate.registry import ANNOTATORS, DEFAULT_ANNOTATORS
from treasure.annotate.rules import RulesConfig
from treasure.annotate.source import SourceConfig
from treasure.annotate.stats import StatsConfig
from treasure.errors import TreasureError
from treasure.taxonomy import Taxonomy


@dataclass(frozen=True)
class AnnotateConfig:
    """Which annotators run, how (engine, processes, shards), and each annotator's own config."""

    annotators: tuple[str, ...] = DEFAULT_ANNOTATORS
    taxonomy: Taxonomy = field(default_factory=Taxonomy.default)
    engine: Literal["local", "ray"] = "local"
    num_proc: int = 1
    batch_size: int = 256
    shard_size: int = 1000
    length_buckets: LengthBuckets = "taxonomy"
    source: SourceConfig = field(default_factory=SourceConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)
    language: LanguageConfig = field(default_factory=LanguageConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    llm: LLMConfig | None = None
    stats: StatsConfig = field(default_factory=StatsConfig)
    progress: bool = False

    def __post_init__(self) -> None:
        unknown = [a for a in self.annotators if a not in ANNOTATORS]
        if unknown:
            raise TreasureError(f"unknown annotator(s) {', '.join(unknown)}; valid: {', '.join(ANNOTATORS)}")
        if "llm" in self.annotators and self.llm is None:
            raise TreasureError(
                "the llm annotator needs an endpoint and a model (--llm-endpoint, --llm-model)"
            )
        if self.num_proc < 1 or self.batch_size < 1 or self.shard_size < 1:
            raise TreasureError("num_proc, batch_size and shard_size must be at least 1")

    def fingerprint(self) -> str:
        """Hash of everything that changes the output (not the engine or process count)."""
        skip = {"engine", "num_proc", "progress", "shard_size"}
        parts = {f.name: repr(getattr(self, f.name)) for f in fields(self) if f.name not in skip}
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
