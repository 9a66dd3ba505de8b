"""Accuracy of the embedded annotators on labelled data the repo ships: language ID on the LLMZoo
multilingual prompts, task/domain on `treasure/data/dev/task_domain_dev.jsonl`, code_type on HumanEvalPack."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from treasure import io
from treasure.annotate.classifier import Classifier, ClassifierConfig
from treasure.annotate.embedding import EMBEDDING, EmbeddingConfig, embed, row_text
from treasure.annotate.language import LanguageAnnotator, LanguageConfig
from treasure.annotate.rules import CodeTypeGuesser, RulesConfig
from treasure.bundled import DATA_DIR
from treasure.taxonomy import Taxonomy

LLMZOO_LANGUAGES = {
    "ar": "Arabic", "de": "German", "en": "English", "es": "Spanish", "fr": "French",
    "it": "Italian", "ja": "Japanese", "ko": "Korean", "pt": "Portuguese", "zh": "Chinese",
}  # fmt: skip
HUMANEVAL_CODE = {
    "python": "python",
    "js": "javascript",
    "java": "java",
    "go": "go",
    "cpp": "cpp",
    "rust": "rust",
}
DEV_SET = DATA_DIR / "dev" / "task_domain_dev.jsonl"


def per_class(gold: Sequence[Any], pred: Sequence[Any]) -> dict[str, Any]:
    """Accuracy and per-class precision/recall/support over rows with a gold label."""
    pairs = [(g, p) for g, p in zip(gold, pred, strict=True) if g is not None]
    classes = sorted({g for g, _ in pairs} | {p for _, p in pairs if p is not None})
    report: dict[str, Any] = {
        "n": len(pairs),
        "accuracy": round(sum(g == p for g, p in pairs) / max(len(pairs), 1), 4),
    }
    report["classes"] = {}
    for c in classes:
        tp = sum(g == c and p == c for g, p in pairs)
        predicted = sum(p == c for _, p in pairs)
        support = sum(g == c for g, _ in pairs)
        report["classes"][c] = {
            "precision": round(tp / predicted, 4) if predicted else None,
            "recall": round(tp / support, 4) if support else None,
            "support": support,
        }
    return report


def language_accuracy(config: LanguageConfig | None = None, limit: int | None = None) -> dict[str, Any]:
    """Language ID on the 10 LLMZoo files (`query` field; language from the file name)."""
    step = LanguageAnnotator(Taxonomy.default(), config)
    gold, pred = [], []
    for code, language in LLMZOO_LANGUAGES.items():
        for row in io.read_records(DATA_DIR / f"multilingual/llmzoo_{code}100.jsonl")[:limit]:
            gold.append(language)
            pred.append(step.detect(row["query"]))
    return per_class(gold, pred)


def classifier_accuracy(
    dev_path: Path = DEV_SET, config: ClassifierConfig | None = None, limit: int | None = None
) -> dict[str, Any]:
    """Task and domain precision/recall on the dev set."""
    rows = io.read_records(dev_path)[:limit]
    emb = EmbeddingConfig()
    vectors = embed([row_text(r["prompt"], r["response"], emb.max_chars) for r in rows], emb)
    step = Classifier(Taxonomy.default(), config)
    out = step({EMBEDDING: list(vectors)})
    return {m: per_class([r[m] for r in rows], out[m]) for m in step.produces}


def code_type_accuracy(limit: int | None = None) -> dict[str, Any]:
    """code_type of HumanEvalPack canonical solutions (declaration + body, unfenced)."""
    guesser = CodeTypeGuesser(Taxonomy.default()["code_type"].values, RulesConfig())
    gold, pred = [], []
    for lang, value in HUMANEVAL_CODE.items():
        for row in io.read_records(DATA_DIR / f"code/humanevalpack_{lang}.jsonl.gz")[:limit]:
            gold.append(value)
            pred.append(guesser(row["declaration"] + row["canonical_solution"]))
    return per_class(gold, pred)
