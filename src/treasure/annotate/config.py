"""`AnnotateConfig`: which annotators run, how, and each annotator's own config."""

from __future__ import annotations

import hashlib
import json
import logging
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
from treasure.knobs import group, knob
from treasure.taxonomy import Taxonomy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnnotateConfig:
    """Which annotators run, how (engine, processes, shards), and each annotator's own config."""

    annotators: tuple[str, ...] = field(
        default=DEFAULT_ANNOTATORS, metadata=knob(f"Comma list of: {', '.join(ANNOTATORS)}.")
    )
    taxonomy: Taxonomy = field(
        default_factory=Taxonomy.default,
        metadata=knob("Taxonomy YAML (default: the paper's 13).", "-t", parse=Taxonomy.load),
    )
    engine: Literal["local", "ray"] = field(default="local", metadata=knob("local or ray."))
    num_proc: int = field(default=1, metadata=knob("Processes (local engine) or workers (ray)."))
    batch_size: int = field(default=256, metadata=knob("Rows per annotation batch."))
    shard_size: int = field(
        default=1000, metadata=knob("Rows per shard written to OUTPUT.work/ (resume unit).")
    )
    length_buckets: LengthBuckets = field(
        default="quantile",
        metadata=knob("quantile: tertiles of the data's length_tokens; taxonomy: the taxonomy's thresholds."),
    )
    source: SourceConfig = field(default_factory=SourceConfig, metadata=group("source"))
    rules: RulesConfig = field(default_factory=RulesConfig)
    language: LanguageConfig = field(default_factory=LanguageConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig, metadata=group("classifier"))
    quality: QualityConfig = field(default_factory=QualityConfig, metadata=group())
    llm: LLMConfig | None = field(default=None, metadata=group("llm"))
    stats: StatsConfig = field(default_factory=StatsConfig)
    progress: bool = False

    def __post_init__(self) -> None:
        unknown = [a for a in self.annotators if a not in ANNOTATORS]
        if unknown:
            raise TreasureError(f"unknown annotator(s) {', '.join(unknown)}; valid: {', '.join(ANNOTATORS)}")
        if "llm" in self.annotators and self.llm is None:
            raise TreasureError(
                "the llm annotator needs an endpoint and a model: --llm-endpoint URL --llm-model NAME "
                "(in a YAML config: llm: {endpoint: URL, model: NAME})"
            )
        if self.llm is not None and "llm" not in self.annotators:  # an LLM call costs money: not implied
            raise TreasureError(
                "llm options (endpoint, model) are set but the llm annotator is off: add llm to "
                f"annotators (--annotators {','.join((*self.annotators, 'llm'))}) or drop the llm options"
            )
        if (self.source.value or self.source.from_field) and "source" not in self.annotators:
            option = "--source" if self.source.value else "--source-field"
            log.warning("%s given: running the source annotator too (it was not in annotators)", option)
            object.__setattr__(self, "annotators", (*self.annotators, "source"))
        if self.engine not in ("local", "ray"):
            raise TreasureError(f"engine must be local or ray, got {self.engine!r}")
        if self.length_buckets not in ("taxonomy", "quantile"):
            raise TreasureError(f"length_buckets must be taxonomy or quantile, got {self.length_buckets!r}")
        if self.num_proc < 1 or self.batch_size < 1 or self.shard_size < 1:
            raise TreasureError("num_proc, batch_size and shard_size must be at least 1")

    def fingerprint(self) -> str:
        """Hash of everything that changes the output (not the engine or process count)."""
        skip = {"engine", "num_proc", "progress", "shard_size"}
        parts = {f.name: repr(getattr(self, f.name)) for f in fields(self) if f.name not in skip}
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
