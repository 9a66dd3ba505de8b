"""The columns each annotator writes, declared once: the registry and each step class read them here."""

from __future__ import annotations

from treasure.annotate.embedding import EMBEDDING

PRODUCES: dict[str, tuple[str, ...]] = {
    "source": ("source",),
    "language": ("language",),
    "rules": ("length_tokens", "length_sentences", "length_paragraphs", "code_type", "format"),
    "embedding": (EMBEDDING,),
    "classifier": ("task", "domain"),  # the markers its weights hold (`ClassifierConfig.markers`)
    "quality": ("quality",),
    "llm": ("task", "domain", "format", "style"),  # those `LLMConfig.markers` may name
}
