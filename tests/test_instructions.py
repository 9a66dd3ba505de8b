"""The plain-words constraint detector behind the "fixed" mode."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from treasure.bundled import DATA_DIR
from treasure.instructions import DetectConfig, detect, fit_to_trained
from treasure.instructions_eval import score_files
from treasure.taxonomy import Taxonomy, with_thresholds

LI_SENTENCE = "Answer the following instruction using {n} words or less."


@given(n=st.integers(1, 5000), before=st.booleans())
@settings(max_examples=60, deadline=None)
def test_alpacaeval_li_sentence_becomes_length_tokens_and_is_removed(n: int, before: bool) -> None:
    task = "Write a short story about a lighthouse keeper. Make it funny."
    prompt = f"{LI_SENTENCE.format(n=n)} {task}" if before else f"{task} {LI_SENTENCE.format(n=n)}"
    found = detect(prompt)
    assert found.markers == {"length_tokens": n}
    assert found.prompt == task


@pytest.mark.parametrize(
    ("prompt", "markers", "rest"),
    [
        ("Describe Rome in under 80 words.", {"length_tokens": 80}, "Describe Rome."),
        ("Describe Rome. Use no more than 80 words.", {"length_tokens": 80}, "Describe Rome."),
        ("Summarise the plot in 3 sentences.", {"length_sentences": 3}, "Summarise the plot."),
        ("Explain tides in one paragraph.", {"length_paragraphs": 1}, "Explain tides."),
        ("Explain tides. Answer in Spanish.", {"language": "Spanish"}, "Explain tides."),
        ("Explica las mareas en español.", {"language": "Spanish"}, "Explica las mareas."),
        ("Explique les marées. Réponds en anglais.", {"language": "English"}, "Explique les marées."),
        (
            "潮の満ち引きをフランス語で説明してください。",
            {"language": "French"},
            "潮の満ち引きを説明してください。",
        ),
        ("List the planets as a table.", {"format": "Tabular"}, "List the planets."),
        ("Give the capitals in JSON.", {"format": "JSON"}, "Give the capitals."),
        ("Name three fruits as a bulleted list.", {"format": "Enumeration"}, "Name three fruits."),
        (
            "Write a blog post. Your entire reply should contain 600 to 700 words.",
            {"length_tokens": 650},
            "Write a blog post.",
        ),
        (
            "Tell me about owls in French in fewer than 50 words.",
            {"language": "French", "length_tokens": 50},
            "Tell me about owls.",
        ),
    ],
)
def test_phrasings(prompt: str, markers: dict, rest: str) -> None:
    found = detect(prompt)
    assert found.markers == markers
    assert found.prompt == rest


@pytest.mark.parametrize(
    "prompt",
    [
        "What is 3 < 5?",
        "Translate 'good morning' for me.",
        "Write about the 1000 words every child should know.".replace("1000 words", "vocabulary"),
        "Why do cats purr?",
    ],
)
def test_prompts_without_constraints_are_untouched(prompt: str) -> None:
    found = detect(prompt)
    assert found.markers == {}
    assert found.prompt == prompt


def test_language_missing_from_taxonomy_sets_nothing_and_keeps_the_text() -> None:
    prompt = "Are hamburgers sandwiches? Please respond using only the Kannada language."
    assert detect(prompt).markers == {}
    assert detect(prompt).prompt == prompt
    tax = Taxonomy.default()
    assert "Kannada" not in tax["language"].values


def test_bucket_follows_the_taxonomy_thresholds() -> None:
    tax = with_thresholds(Taxonomy.default(), "length_bucket", (54, 160))
    prompt = "Describe Rome. " + LI_SENTENCE.format(n=100)
    found = detect(prompt, taxonomy=tax, config=DetectConfig(set_bucket=True))
    assert found.markers == {"length_tokens": 100, "length_bucket": "medium"}
    assert detect(prompt, taxonomy=tax).markers == {"length_tokens": 100}


@pytest.mark.parametrize(
    ("limit", "bucket"),
    [(5, "concise"), (53, "concise"), (54, "concise"), (159, "concise"), (160, "medium"), (9999, "medium")],
)
def test_word_limit_becomes_the_longest_bucket_that_fits(limit: int, bucket: str) -> None:
    tax = with_thresholds(Taxonomy.default(), "length_bucket", (54, 160))
    trained = {"length_bucket", "task"}
    fitted = fit_to_trained({"length_tokens": limit, "language": "French"}, trained, tax)
    assert fitted == {"length_bucket": bucket, "language": "French"}
    # a model trained on length_tokens keeps the exact limit; one without length_bucket too
    assert fit_to_trained({"length_tokens": limit}, trained | {"length_tokens"}, tax) == {
        "length_tokens": limit
    }
    assert fit_to_trained({"length_tokens": limit}, {"task"}, tax) == {"length_tokens": limit}
    # a bucket stated explicitly is kept
    assert (
        fit_to_trained({"length_tokens": limit, "length_bucket": "long"}, trained, tax)["length_bucket"]
        == "long"
    )


def test_precision_and_recall_on_ifeval_do_not_regress() -> None:
    scores = score_files(
        [DATA_DIR / "eval" / "ifeval_input_data.jsonl.gz", DATA_DIR / "multilingual" / "m_ifeval_fr.jsonl.gz"]
    )
    english, french = scores["ifeval_input_data.jsonl.gz"], scores["m_ifeval_fr.jsonl.gz"]
    assert english["length_tokens"]["precision"] >= 0.8 and english["length_tokens"]["recall"] >= 0.9
    assert english["length_sentences"]["precision"] >= 0.95 and english["length_sentences"]["recall"] >= 0.9
    assert english["language"]["precision"] >= 0.9 and english["language"]["recall"] >= 0.8
    assert english["length_tokens"]["value_accuracy"] >= 0.95
    assert french["length_tokens"]["recall"] >= 0.95 and french["length_paragraphs"]["precision"] >= 0.95
