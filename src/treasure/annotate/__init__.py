"""`treasure annotate`: every marker of the taxonomy from rules, language ID, an embedded classifier, an
LLM tagger and a quality model; local (resumable shards) or Ray Data engine. See the README."""

from treasure.annotate.classifier import ClassifierConfig, TrainClassifierConfig, train_classifier
from treasure.annotate.embedding import EmbeddingConfig
from treasure.annotate.language import LanguageConfig
from treasure.annotate.llm import LLMConfig
from treasure.annotate.pipeline import (
    ANNOTATORS,
    DEFAULT_ANNOTATORS,
    AnnotateConfig,
    AnnotateFileConfig,
    AnnotateResult,
    annotate,
    annotate_dataset,
    annotate_file,
    annotate_texts,
)
from treasure.annotate.quality import QualityConfig, TrainQualityConfig, train_quality
from treasure.annotate.rules import RulesConfig
from treasure.annotate.source import SourceConfig
from treasure.annotate.stats import StatsConfig, compute_stats

__all__ = [
    "ANNOTATORS",
    "DEFAULT_ANNOTATORS",
    "AnnotateConfig",
    "AnnotateFileConfig",
    "AnnotateResult",
    "ClassifierConfig",
    "EmbeddingConfig",
    "LLMConfig",
    "LanguageConfig",
    "QualityConfig",
    "RulesConfig",
    "SourceConfig",
    "StatsConfig",
    "TrainClassifierConfig",
    "TrainQualityConfig",
    "annotate",
    "annotate_dataset",
    "annotate_file",
    "annotate_texts",
    "compute_stats",
    "train_classifier",
    "train_quality",
]
