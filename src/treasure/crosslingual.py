"""Cross-lingual training rows from parallel QA data (XQuAD aligned across languages).

Rows whose prompt and answer share a language teach a model to follow the prompt's language, not the
`language` marker. Here one English prompt (the item's English question) gets the answer-bearing sentence
of the *same* paragraph in each target language as its response, so the same prompt appears in several
languages and only the marker tells them apart. The response sentences are professional translations
(XQuAD), not machine output. The paragraph is not in the prompt: with it, the English answer is a sentence
the prompt already holds, and 250 such rows taught the demo's model to repeat its prompt (measured,
docs/smollm2-demo-experiments.md no. 6).

A share of the rows also asks for the language in plain words ("Answer in Spanish."), so the model learns
to infer the marker from such a request too (the paper's language protocol keeps the request in the prompt).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from treasure import io
from treasure.bundled import DATA_DIR

XQUAD_FILE = DATA_DIR / "multilingual_instruct" / "xquad_parallel.jsonl.gz"
CODES = {"English": "en", "Spanish": "es", "German": "de", "Russian": "ru", "Chinese": "zh"}
CODES |= {"Arabic": "ar", "Hindi": "hi"}
REQUESTS = ("Answer in {lang}.", "Respond in {lang}.", "Please write your answer in {lang}.")


@dataclass(frozen=True)
class CrossLingualConfig:
    """How many parallel items, which answer languages, and the share of rows that ask in plain words."""

    n_items: int = 300
    languages: tuple[str, ...] = ("English", "Spanish", "German")
    request_share: float = 0.3
    min_words: int = 6  # a response sentence shorter than this carries too little language
    max_words: int = 45
    seed: int = 0


def read_items(path: Path = XQUAD_FILE) -> Iterator[dict[str, Any]]:
    """The parallel items: `{"id", "en": {"context", "question", "answer"}, "es": {…}, …}`."""
    yield from io.read_records(path)


@cache
def _sentencizer(code: str) -> Any:
    import spacy

    nlp = spacy.blank(code)
    nlp.add_pipe("sentencizer")
    return nlp


def answer_sentence(side: dict[str, str], code: str) -> str | None:
    """The sentence of `side["context"]` that holds `side["answer"]` (the first one), or None."""
    answer = side["answer"].strip()
    if not answer:
        return None
    for sentence in _sentencizer(code)(side["context"].lstrip("\ufeff")).sents:
        if answer in sentence.text:
            return sentence.text.strip()
    return None


def crosslingual_rows(
    config: CrossLingualConfig, items: Sequence[dict[str, Any]] | None = None
) -> list[dict]:
    """Rows `{"id", "prompt", "response", "language", "source"}`: per usable item, one row per language.

    An item is usable when every language's answer sentence is found and within the word bounds. Items
    are shuffled with the seed before the first `n_items` usable ones are taken; the same seed gives the
    same rows. The request sentence (a share of the rows) is drawn per row from `REQUESTS`.
    """
    pool = list(items if items is not None else read_items())
    rng = random.Random(f"{config.seed}:crosslingual")
    rng.shuffle(pool)
    rows: list[dict] = []
    taken = 0
    for item in pool:
        if taken == config.n_items:
            break
        answers = {lang: answer_sentence(item[CODES[lang]], CODES[lang]) for lang in config.languages}
        english = answers["English"] if "English" in answers else answer_sentence(item["en"], "en")
        texts = [english, *answers.values()]
        if any(t is None or not config.min_words <= len(t.split()) <= config.max_words for t in texts):
            continue
        taken += 1
        prompt = item["en"]["question"].strip()
        for lang, answer in answers.items():
            asked = prompt
            if lang != "English" and rng.random() < config.request_share:
                asked = f"{prompt} {rng.choice(REQUESTS).format(lang=lang)}"
            rows.append(
                {
                    "id": f"xquad:{item['id']}:{CODES[lang]}",
                    "prompt": asked,
                    "response": answer,
                    "language": lang,
                    "source": "Translation" if lang != "English" else "Human",
                }
            )
    return rows
