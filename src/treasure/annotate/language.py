"""Language of the response with lingua, restricted to the taxonomy's languages (models ship in the wheel)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

from lingua import Language, LanguageDetector, LanguageDetectorBuilder

from treasure.annotate.base import Batch, batch_size, text_of
from treasure.annotate.columns import PRODUCES
from treasure.errors import TreasureError
from treasure.taxonomy import Taxonomy

FENCE_RE = re.compile(r"```.*?(```|$)", re.S)


@dataclass(frozen=True)
class LanguageConfig:
    """`max_chars` of the response are read (code blocks removed). lingua's fast low-accuracy mode is used
    for texts of at least `low_accuracy_min_chars` (it is unreliable on short ones); `low_accuracy=False`
    always uses the high-accuracy mode."""

    max_chars: int = 300
    low_accuracy: bool = True
    low_accuracy_min_chars: int = 120
    min_chars: int = 3
    short_chars: int = 60  # a shorter response is read together with its prompt


def lingua_language(value: str) -> Language | None:
    """The lingua `Language` for a taxonomy value such as 'English', or None if lingua lacks it."""
    return getattr(Language, value.upper(), None)


def iso_code(value: str) -> str | None:
    """ISO 639-1 code (lower case) of a taxonomy language value, or None when lingua does not know it."""
    lang = lingua_language(value)
    return lang.iso_code_639_1.name.lower() if lang is not None else None


class LanguageAnnotator:
    """Step producing `language` from the response text (the prompt when the response has no prose)."""

    name = "language"
    produces = PRODUCES["language"]

    def __init__(self, taxonomy: Taxonomy, config: LanguageConfig | None = None):
        self.config = config or LanguageConfig()
        values = taxonomy["language"].values
        self.by_lingua = {lingua_language(v): v for v in values if lingua_language(v) is not None}
        if not self.by_lingua:
            raise TreasureError(f"no language of the taxonomy is known to lingua: {', '.join(values)}")
        self.version = f"lingua-{version('lingua-language-detector')}" + (
            "-low" if self.config.low_accuracy else "-high"
        )
        self._detectors: dict[bool, LanguageDetector] = {}

    def detector(self, low_accuracy: bool) -> LanguageDetector:
        """lingua detector over the taxonomy's languages (built once per mode)."""
        if low_accuracy not in self._detectors:
            builder = LanguageDetectorBuilder.from_languages(*self.by_lingua)
            if low_accuracy:
                builder = builder.with_low_accuracy_mode()
            self._detectors[low_accuracy] = builder.build()
        return self._detectors[low_accuracy]

    def detect(self, text: str) -> str | None:
        """Taxonomy language of one text, or None when too short or undecided."""
        text = FENCE_RE.sub(" ", text).strip()[: self.config.max_chars]
        if len(text) < self.config.min_chars:
            return None
        low = self.config.low_accuracy and len(text) >= self.config.low_accuracy_min_chars
        found = self.detector(low).detect_language_of(text)
        return self.by_lingua.get(found) if found is not None else None

    def __call__(self, batch: Mapping[str, list[Any]]) -> Batch:
        out = []
        for i in range(batch_size(batch)):
            response = text_of(batch["response"][i])
            if len(FENCE_RE.sub(" ", response).strip()) < self.config.short_chars:
                response = f"{text_of(batch['prompt'][i])}\n{response}"
            out.append(self.detect(response))
        return {"language": out}
