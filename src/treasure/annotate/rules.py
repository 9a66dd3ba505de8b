"""Rule annotators: lengths (spaCy blank pipelines + sentencizer), code_type (fences, then Magika), format.

Magika (Google's content-type model, ONNX, ships in its wheel) guesses the language of unlabelled code:
on HumanEvalPack solutions it names the right language far more often than Pygments' `analyse_text`.

`length_bucket` and `quality_bucket` need the whole dataset (quantile thresholds, quartiles per
language), so they are computed in `buckets.py` after every batch is done.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import numpy as np
import spacy
from magika import Magika
from spacy.attrs import IS_PUNCT, IS_SPACE, SENT_START

from treasure.annotate.base import Batch, batch_size, text_of
from treasure.annotate.columns import PRODUCES
from treasure.annotate.language import iso_code
from treasure.taxonomy import Taxonomy

FENCE_RE = re.compile(r"```[ \t]*([^\n`]*)\n(.*?)(?:```|$)", re.S)
PARAGRAPH_RE = re.compile(r"\n[ \t]*\n")
# info-string aliases → taxonomy code_type values (the value itself always maps to itself)
CODE_ALIASES = {
    "py": "python", "python3": "python", "py3": "python", "ipython": "python",
    "js": "javascript", "jsx": "javascript", "node": "javascript", "nodejs": "javascript",
    "c++": "cpp", "cc": "cpp", "cxx": "cpp", "hpp": "cpp",
    "cs": "csharp", "c#": "csharp",
    "sh": "shell", "bash": "shell", "zsh": "shell", "console": "shell", "shell-session": "shell",
    "ts": "typescript", "tsx": "typescript", "rb": "ruby", "hs": "haskell", "kt": "kotlin",
    "golang": "go", "rs": "rust", "mysql": "sql", "postgresql": "sql", "postgres": "sql",
    "sqlite": "sql", "plsql": "sql", "cbl": "cobol",
}  # fmt: skip
# Magika labels that differ from the taxonomy value
MAGIKA_ALIASES = {"cs": "csharp"}
# a line that looks like code: ends in ; { } : ) or starts with a keyword, comment or indentation
CODE_LINE_RE = re.compile(
    r"([;{}]\s*$|\):\s*$|^\s*(def|class|import|from|return|if|for|while|func|fn|let|const|var|public|"
    r"private|static|package|#include|using|SELECT|select|#!|//|/\*|\$ )\b|^( {4}|\t)\S)"
)
TABLE_SEP_RE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)+\|?\s*$", re.M)
LIST_RE = re.compile(r"^\s*(\d+[.)]|[-*•+])\s+\S", re.M)
HEADING_RE = re.compile(r"^#{1,6}\s+\S|\*\*[^*\n]+\*\*|\[[^\]\n]+\]\([^)\s]+\)|^```", re.M)
LATEX_RE = re.compile(r"\\begin\{|\\frac\{|\\sum_|\\int_|\$\$.+?\$\$|\\\[.+?\\\]|\\\(.+?\\\)", re.S)
MCQ_RE = re.compile(
    r"^\s*(\(?[A-E]\)|[A-E][.:](\s|$)|(the\s+)?(correct\s+)?(answer|option)\s+(is\s*)?:?\s*\(?[A-E]\b)",
    re.I,
)
STEP_RE = re.compile(r"^\s*(step\s*\d+|\d+\.\s*(first|next|then|finally))", re.I | re.M)
COT_RE = re.compile(r"step[- ]by[- ]step|let'?s think|let us think", re.I)
CONCLUSION_RE = re.compile(r"\b(therefore|thus|hence|so the answer|the answer is)\b", re.I)
FORMAT_ORDER = ("JSON", "XML", "Tabular", "Latex", "MCQAnswer", "ChainOfThought", "Enumeration", "Markdown")


@dataclass(frozen=True)
class RulesConfig:
    """Knobs of the rule annotators."""

    code_line_share: float = 0.5  # unfenced text counts as code when this share of lines looks like code
    mcq_max_chars: int = 200  # an MCQ answer is short
    min_list_items: int = 2


class LengthCounter:
    """Words and sentences with a spaCy blank pipeline per language (multilingual `xx` as fallback)."""

    def __init__(self) -> None:
        self._pipes: dict[str, Any] = {}

    def pipe(self, language: str | None) -> Any:
        code = (iso_code(language) if language else None) or "xx"
        if code not in self._pipes:
            self._pipes[code] = self._make(code)
        return self._pipes[code]

    @staticmethod
    def _make(code: str) -> Any:
        config = {"nlp": {"tokenizer": {"use_pyvi": False}}} if code == "vi" else None
        try:
            nlp = spacy.blank(code, config=config) if config else spacy.blank(code)
        except (ImportError, OSError, ValueError):  # e.g. ja needs SudachiPy, ko needs mecab-ko
            nlp = spacy.blank("xx")
        nlp.add_pipe("sentencizer")
        return nlp

    def count(self, text: str, language: str | None) -> tuple[int, int]:
        """(tokens, sentences): spaCy tokens that are not space, punctuation included (as the paper counts
        `length_tokens`, so N such tokens are fewer than N words); non-empty sentences."""
        if not text.strip():
            return 0, 0
        doc = self.pipe(language)(text)
        flags = doc.to_array([IS_SPACE, IS_PUNCT, SENT_START]).astype(np.int64)
        tokens = int((flags[:, 0] == 0).sum())
        sentence_ids = np.cumsum(flags[:, 2] == 1)
        sentences = len(np.unique(sentence_ids[flags[:, 0] == 0]))
        return tokens, sentences


def paragraphs(text: str) -> int:
    """Paragraphs: non-empty chunks between blank lines."""
    return sum(1 for p in PARAGRAPH_RE.split(text) if p.strip())


class CodeTypeGuesser:
    """Programming language of code in a text, restricted to the taxonomy's `code_type` values."""

    def __init__(self, values: tuple[str, ...], config: RulesConfig):
        self.values = values
        self.config = config
        self._magika: Magika | None = None

    def canonical(self, info: str) -> str | None:
        word = info.strip().split()[0].lower() if info.strip() else ""
        word = CODE_ALIASES.get(word, word)
        return word if word in self.values else None

    def guess(self, code: str) -> str | None:
        """Magika's label for the code when it is one of the allowed values, else None."""
        if self._magika is None:
            self._magika = Magika()
        label = str(self._magika.identify_bytes(code.encode("utf-8")).output.label)
        label = MAGIKA_ALIASES.get(label, label)
        return label if label in self.values else None

    def looks_like_code(self, text: str) -> bool:
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) < 2:
            return False
        return (
            sum(bool(CODE_LINE_RE.search(line)) for line in lines) / len(lines) >= self.config.code_line_share
        )

    def __call__(self, text: str) -> str | None:
        blocks = FENCE_RE.findall(text)
        for info, _ in blocks:
            found = self.canonical(info)
            if found:
                return found
        if blocks:
            return self.guess("\n".join(code for _, code in blocks))
        if self.looks_like_code(text):
            return self.guess(text)
        return None


def _is_json(text: str) -> bool:
    body = text.strip()
    blocks = FENCE_RE.findall(body)
    if blocks and blocks[0][0].strip().lower() == "json":
        body = blocks[0][1].strip()
    if not body or body[0] not in "[{":
        return False
    try:
        return isinstance(json.loads(body), dict | list)
    except ValueError:
        return False


def _is_xml(text: str) -> bool:
    body = text.strip()
    if not body.startswith("<") or not body.endswith(">"):
        return False
    try:
        ET.fromstring(re.sub(r"^<\?xml[^>]*\?>", "", body).strip())
    except ET.ParseError:
        return False
    return True


def detect_format(text: str, config: RulesConfig) -> str | None:
    """First matching format in `FORMAT_ORDER`, or None for plain prose."""
    checks = {
        "JSON": lambda: _is_json(text),
        "XML": lambda: _is_xml(text),
        "Tabular": lambda: bool(TABLE_SEP_RE.search(text)),
        "Latex": lambda: bool(LATEX_RE.search(text)),
        "MCQAnswer": lambda: len(text.strip()) <= config.mcq_max_chars and bool(MCQ_RE.match(text)),
        "ChainOfThought": lambda: (
            len(STEP_RE.findall(text)) >= 2
            or (bool(COT_RE.search(text)) and bool(CONCLUSION_RE.search(text)))
        ),
        "Enumeration": lambda: len(LIST_RE.findall(text)) >= config.min_list_items,
        "Markdown": lambda: bool(HEADING_RE.search(text)),
    }
    return next((name for name in FORMAT_ORDER if checks[name]()), None)


class RulesAnnotator:
    """Step producing length_tokens, length_sentences, length_paragraphs, code_type and format."""

    name = "rules"
    produces = PRODUCES["rules"]

    def __init__(self, taxonomy: Taxonomy, config: RulesConfig | None = None):
        self.config = config or RulesConfig()
        self.taxonomy = taxonomy
        self.version = f"rules-2/spacy-{version('spacy')}/magika-{version('magika')}"
        self.lengths = LengthCounter()
        code_values = taxonomy["code_type"].values if "code_type" in taxonomy else ()
        self.code = CodeTypeGuesser(code_values, self.config)
        self.formats = set(taxonomy["format"].values) if "format" in taxonomy else set()

    def __call__(self, batch: Mapping[str, list[Any]]) -> Batch:
        out: Batch = {name: [] for name in self.produces}
        languages = batch.get("language") or [None] * batch_size(batch)
        for text, language in zip(batch["response"], languages, strict=True):
            text = text_of(text)
            tokens, sentences = self.lengths.count(text, language)
            out["length_tokens"].append(tokens)
            out["length_sentences"].append(sentences)
            out["length_paragraphs"].append(paragraphs(text))
            out["code_type"].append(self.code(text) if self.code.values else None)
            fmt = detect_format(text, self.config)
            out["format"].append(fmt if fmt in self.formats else None)
        return out
