"""Precision and recall of `instructions.detect` against IFEval-style gold (instruction ids + kwargs).

Gold comes from files in the IFEval schema (`prompt`, `instruction_id_list`, `kwargs`; M-IFEval ids
carry a language prefix such as `es:`). Scored per prompt and marker: a detection is a true positive
when the prompt carries the matching instruction, and its value is counted correct when it lies within
the gold bounds (±1, since "at most 150" is stored as "less than 151").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from treasure import io
from treasure.instructions import detect
from treasure.taxonomy import Taxonomy

GOLD_IDS = {
    "length_constraints:number_words": ("length_tokens", "num_words"),
    "length_constraints:number_sentences": ("length_sentences", "num_sentences"),
    "length_constraints:number_paragraphs": ("length_paragraphs", "num_paragraphs"),
    "length_constraints:nth_paragraph_first_word": ("length_paragraphs", "num_paragraphs"),
    "language:response_language": ("language", "language"),
    "detectable_format:json_format": ("format", None),
    "detectable_format:number_bullet_lists": ("format", None),
}
# "Your entire response should be in English, and in all lowercase letters": these ids often state the
# language but not always, so a detected language there is neither a hit nor a false alarm (neutral)
CASE_LANGUAGE = {"english": "English", "spanish": "Spanish", "french": "French"}
FORMAT_OF = {"detectable_format:json_format": "JSON", "detectable_format:number_bullet_lists": "Enumeration"}
ISO_LANGUAGES = {
    "en": "English", "fr": "French", "es": "Spanish", "it": "Italian", "de": "German", "pt": "Portuguese",
    "ja": "Japanese", "ko": "Korean", "ar": "Arabic", "zh": "Chinese", "ru": "Russian", "pl": "Polish",
    "tr": "Turkish", "vi": "Vietnamese", "nl": "Dutch", "cs": "Czech", "id": "Indonesian", "uk": "Ukrainian",
    "ro": "Romanian", "el": "Greek", "hi": "Hindi", "he": "Hebrew", "fa": "Persian",
}  # fmt: skip


@dataclass
class MarkerScore:
    """Counts for one marker: true/false positives, misses, and true positives with the right value."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    value_ok: int = 0
    gold_outside_taxonomy: int = 0
    neutral: int = 0

    def as_dict(self) -> dict[str, Any]:
        precision = self.tp / (self.tp + self.fp) if self.tp + self.fp else None
        recall = self.tp / (self.tp + self.fn) if self.tp + self.fn else None
        return {
            "precision": None if precision is None else round(precision, 3),
            "recall": None if recall is None else round(recall, 3),
            "value_accuracy": round(self.value_ok / self.tp, 3) if self.tp else None,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "gold_outside_taxonomy": self.gold_outside_taxonomy,
            "neutral": self.neutral,
        }


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of an IFEval-schema JSONL file (optionally gzipped)."""
    return io.read_records(path)


def _gold(row: dict[str, Any], tax: Taxonomy) -> tuple[dict[str, list[Any]], set[str], set[str]]:
    gold: dict[str, list[Any]] = {}
    outside: set[str] = set()
    neutral: set[str] = set()
    for instruction, kwargs in zip(row["instruction_id_list"], row["kwargs"], strict=True):
        base = instruction.split(":", 1)[1] if instruction.count(":") == 2 else instruction
        case = base.removeprefix("change_case:").split("_")[0]
        if base.startswith("change_case:") and case in CASE_LANGUAGE:
            neutral.add("language")
            continue
        if base not in GOLD_IDS:
            continue
        marker, key = GOLD_IDS[base]
        if marker == "language":
            value = ISO_LANGUAGES.get(kwargs.get("language", ""))
            if value is None or value not in tax["language"].values:
                outside.add(marker)
                continue
        elif marker == "format":
            value = FORMAT_OF[base]
        else:
            value = int(kwargs[key])
        gold.setdefault(marker, []).append(value)
    return gold, outside, neutral - gold.keys()


def _value_ok(predicted: Any, gold: list[Any]) -> bool:
    if isinstance(predicted, int) and all(isinstance(g, int) for g in gold):
        return min(gold) - 1 <= predicted <= max(gold) + 1
    return predicted in gold


def score(rows: Iterable[dict[str, Any]], taxonomy: Taxonomy | None = None) -> dict[str, MarkerScore]:
    """Score the detector on IFEval-schema rows, per marker."""
    tax = taxonomy or Taxonomy.default()
    names = ("length_tokens", "length_sentences", "length_paragraphs", "language", "format")
    scores = {m: MarkerScore() for m in names}
    for row in rows:
        gold, outside, neutral = _gold(row, tax)
        predicted = detect(row["prompt"], taxonomy=tax).markers
        for marker, result in scores.items():
            if marker in outside:
                result.gold_outside_taxonomy += 1
                continue
            if marker in neutral:
                result.neutral += 1
                continue
            if marker in predicted and marker in gold:
                result.tp += 1
                result.value_ok += _value_ok(predicted[marker], gold[marker])
            elif marker in predicted:
                result.fp += 1
            elif marker in gold:
                result.fn += 1
    return scores


def score_files(paths: Iterable[str | Path]) -> dict[str, dict[str, Any]]:
    """`score` each file; returns {file name: {marker: counts, precision, recall, value accuracy}}."""
    return {Path(p).name: {m: s.as_dict() for m, s in score(read_rows(p)).items()} for p in paths}
