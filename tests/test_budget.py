"""The word budget: `trim_to_budget` (never over N words, a prefix, at a sentence end when there is one
within N words), the streaming filter that releases the same text, and real generations of the tiny model
that never go over N words on any path (transformers' processor, or only the trim as on vLLM/upstream)."""

from __future__ import annotations

import itertools
import re
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from treasure import template
from treasure.budget import BudgetFilter, answer_text, count_words, trim_to_budget, word_limit
from treasure.bundled import DATA_DIR
from treasure.generate import GenerationConfig, Generator
from treasure.instructions_eval import read_rows

PROMPTS = [row["turns"][0] for row in read_rows(DATA_DIR / "eval" / "vicuna_bench_question.jsonl.gz")[:8]]
WORDS = st.sampled_from(["a", "word", "3.5", "e.g.", "end.", "Why?", "Yes!", '"Hi."', "文。", "x,", "(y)"])
GAPS = st.sampled_from([" ", " ", " ", "  ", "\n", "\n\n", "\t", ""])
TEXTS = st.lists(st.tuples(WORDS, GAPS), max_size=30).map(lambda parts: "".join(w + g for w, g in parts))
# an independent oracle of "ends a sentence": terminal punctuation (closing quotes allowed) before
# whitespace, an ideographic full stop, or a line break right after the kept text
ENDS_SENTENCE = re.compile(r"([.!?][\"')\]]*|。)$")


def ends_sentence(kept: str, text: str) -> bool:
    return bool(ENDS_SENTENCE.search(kept)) or text[len(kept) :].lstrip(" \t").startswith("\n")


def has_sentence_end_within(text: str, limit: int) -> bool:
    """Whether one of the first `limit` words ends a sentence, or a line break follows it (oracle)."""
    words = list(re.finditer(r"\S+", text))
    for i, word in enumerate(words[:limit]):
        if "。" in word.group() or re.search(r"[.!?][\"')\]]*$", word.group()):
            return True
        gap_end = words[i + 1].start() if i + 1 < len(words) else len(text)
        if "\n" in text[word.end() : gap_end]:
            return True
    return False


@given(text=TEXTS, limit=st.integers(0, 12))
@settings(max_examples=400, deadline=None)
def test_trim_is_a_prefix_within_the_budget_ending_a_sentence(text: str, limit: int) -> None:
    kept = trim_to_budget(text, limit)
    assert text.startswith(kept)
    assert count_words(kept) <= limit
    if count_words(text) <= limit:
        assert kept == text  # within the budget: untouched
    elif has_sentence_end_within(text, limit):
        assert ends_sentence(kept, text), (text, kept)
        assert kept.strip()


@given(text=TEXTS, limit=st.integers(0, 12), cuts=st.lists(st.integers(0, 400), max_size=8))
@settings(max_examples=300, deadline=None)
def test_streamed_budget_adds_up_to_the_trimmed_answer(text: str, limit: int, cuts: list[int]) -> None:
    stream, released = BudgetFilter(limit), []
    bounds = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    for start, end in itertools.pairwise(bounds):
        released.append(stream.feed(text[start:end]))
        assert count_words("".join(released)) <= limit  # nothing over the budget is ever shown
    assert "".join(released) + stream.finish() == trim_to_budget(text, limit)


def test_trim_examples() -> None:
    text = "The sky is blue. Light scatters off air molecules, mostly blue light."
    assert trim_to_budget(text, 20) == text
    assert trim_to_budget(text, 6) == "The sky is blue."
    assert trim_to_budget(text, 3) == "The sky is"  # no sentence end within 3 words: the first 3 words
    assert trim_to_budget("Pi is 3.14 or so. Yes.", 4) == "Pi is 3.14 or"  # "3.14" ends nothing
    assert trim_to_budget("First line\nsecond line here", 3) == "First line"
    assert trim_to_budget('He said "Hi." Then left quickly.', 4) == 'He said "Hi."'
    assert trim_to_budget("\nLeading break then words", 2) == "\nLeading break"  # a break after no text
    assert trim_to_budget("これは文。次の文。", 0) == ""
    assert word_limit({"length_tokens": 40, "task": "Reasoning"}) == 40 and word_limit({}) is None
    assert answer_text("<TEMPLATE>\n<task>Reasoning</task>\n</TEMPLATE>\nSo it is") == "\nSo it is"
    assert answer_text("<TEMPLATE>\n<task>Reas") == "" and answer_text("<TEMP") == ""
    assert answer_text("No block here") == "No block here"


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> Generator:
    return Generator.from_model_dir(tiny_model_dir)


def untrimmed(generation_raw: str) -> str:
    return template.strip_blocks(template.parse(generation_raw).response)[0]


@pytest.mark.slow
@pytest.mark.parametrize("limit", [3, 5, 8])
def test_real_generations_never_exceed_the_budget(tiny: Generator, limit: int) -> None:
    markers = {"length_tokens": limit}
    for temperature in (0.0, 0.9):
        config = GenerationConfig(max_new_tokens=100, temperature=temperature, seed=1, length_budget=True)
        results = tiny.generate(PROMPTS, "controlling", markers, config=config)
        for result in results:
            assert count_words(result.response) <= limit, result.raw
            whole = untrimmed(result.raw)
            assert result.response == trim_to_budget(whole, limit)
            if count_words(whole) > limit and has_sentence_end_within(whole, limit):
                assert ends_sentence(result.response, whole), result.raw
            assert template.OPEN not in result.response
        *pieces, final = list(tiny.stream(PROMPTS[0], "controlling", markers, config=config))
        alone = tiny.generate(PROMPTS[:1], "controlling", markers, config=config)[0]
        assert "".join(pieces) == final.response == alone.response
    # the processor ends each answer right after its budget: far fewer tokens than without it
    greedy = GenerationConfig(max_new_tokens=100, temperature=0)
    free = tiny.generate(PROMPTS, "controlling", markers, config=greedy)
    held = tiny.generate(PROMPTS, "controlling", markers, config=replace(greedy, length_budget=True))
    over = [i for i, g in enumerate(free) if count_words(g.response) > limit + 2]
    assert over, "the tiny model should run past small budgets on its own"
    assert all(held[i].n_tokens < free[i].n_tokens for i in over)
    assert all(h.finished for h in held)


@pytest.mark.slow
def test_budget_with_guidance_and_fixed_mode(tiny: Generator) -> None:
    prompt = "Describe a sunny day at the beach. Answer the following instruction using 5 words or less."
    config = GenerationConfig(max_new_tokens=100, temperature=0, length_budget=True, guidance=2.0)
    result = tiny.generate([prompt], "fixed", config=config)[0]
    assert result.given_markers.get("length_tokens") == 5
    assert count_words(result.response) <= 5
    # a model trained without length_tokens gets a bucket instead, but the budget stays the detected one
    bucketed = Generator(tiny.backend, tiny.taxonomy, trained_markers=frozenset({"length_bucket"}))
    prepared = bucketed.prepare(prompt, "fixed")
    assert "length_tokens" not in prepared.given_markers and prepared.word_budget == 5
    assert count_words(bucketed.generate([prompt], "fixed", config=config)[0].response) <= 5


@pytest.mark.slow
def test_backends_without_the_processor_still_keep_the_budget(tiny_model_dir: Path) -> None:
    """vLLM and upstream engines cannot run the processor: the trim alone keeps the budget there."""
    trimming_only = Generator.from_model_dir(tiny_model_dir)
    trimming_only.backend.steers = False  # as vLLM / upstream: the backend gets the plain text only
    config = GenerationConfig(max_new_tokens=60, temperature=0, length_budget=True)
    results = trimming_only.generate(PROMPTS, "controlling", {"length_tokens": 4}, config=config)
    assert all(count_words(r.response) <= 4 for r in results)
    assert any(r.n_tokens == 60 for r in results)  # generated in full, then trimmed
    assert [r.response for r in results] == [trim_to_budget(untrimmed(r.raw), 4) for r in results]
