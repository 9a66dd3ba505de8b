"""`treasure annotate`: every marker of the taxonomy from rules, language ID, an embedded classifier, an
LLM tagger and a quality model; local (resumable shards) or Ray Data engine. See the README.

Names are imported from their submodule on first use, so importing one submodule (the registry, the Ray
engine) does not load the others.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_HOME = {
    "ANNOTATORS": "registry",
    "DEFAULT_ANNOTATORS": "registry",
    "AnnotateConfig": "config",
    "AnnotateFileConfig": "pipeline",
    "AnnotateResult": "pipeline",
    "ClassifierConfig": "classifier",
    "EmbeddingConfig": "embedding",
    "LLMConfig": "llm",
    "LanguageConfig": "language",
    "QualityConfig": "quality",
    "RulesConfig": "rules",
    "SourceConfig": "source",
    "StatsConfig": "stats",
    "TrainClassifierConfig": "classifier",
    "TrainQualityConfig": "quality",
    "annotate": "pipeline",
    "annotate_dataset": "pipeline",
    "annotate_file": "pipeline",
    "annotate_texts": "pipeline",
    "compute_stats": "stats",
    "train_classifier": "classifier",
    "train_quality": "quality",
}
__all__ = list(_HOME)


def __getattr__(name: str) -> Any:
    """The exported `name`, imported from its submodule."""
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_HOME[name]}"), name)
