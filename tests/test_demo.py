"""The demo's data recipe and stage cache (the full demo runs with `make demo`, not in the tests)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from rich.console import Console

from treasure.demo import RECIPES, DemoConfig, run_stage, select_rows
from treasure.errors import TreasureError
from treasure.taxonomy import Taxonomy, with_thresholds


def band_of(words: int, bands: tuple[tuple[int, int], ...]) -> int:
    return next(i for i, (lo, hi) in enumerate(bands) if lo <= words <= hi)


def test_length_bucket_thresholds_fall_between_the_response_bands(tmp_path: Path) -> None:
    """The demo's length_bucket cuts separate its English bands; all-row tertiles would not (the short
    cross-lingual answers fill the middle, the length ladders every gap)."""
    from treasure import io
    from treasure.annotate.buckets import quantile_thresholds
    from treasure.demo import banded_thresholds

    spec = RECIPES["smollm2"]
    ds, _, _ = select_rows(spec, seed=0)
    io.save(ds.remove_columns(["file"]), tmp_path / "rows.jsonl")
    cuts = banded_thresholds(tmp_path / "rows.jsonl")
    ladders = {r["id"].split("#")[0] for r in ds if "#cut" in r["id"]}
    english = [r["response"] for r in ds if r["language"] is None and r["id"].split("#")[0] not in ladders]
    band = [band_of(len(t.split()), spec.response_bands) for t in english]

    def agreement(thresholds: tuple[int, ...]) -> float:
        marker = with_thresholds(Taxonomy.default(), "length_bucket", thresholds)["length_bucket"]
        bucket = [marker.values.index(marker.bucket_of(n)) for _, n in _tokens(english)]
        return sum(b == k for b, k in zip(bucket, band, strict=True)) / len(band)

    assert agreement(cuts) >= 0.97
    everything = quantile_thresholds([n for _, n in _tokens(list(ds["response"]))], 3)
    assert agreement(everything) < 0.8  # what the all-row tertiles did


def _tokens(texts: list[str]) -> list[tuple[str, int]]:
    from treasure.annotate.rules import LengthCounter

    counter = LengthCounter()
    return [(t, counter.count(t, "English")[0]) for t in texts]


def test_smollm2_recipe_rows_are_banded_crosslingual_and_seeded() -> None:
    spec = RECIPES["smollm2"]
    ds, total, _ = select_rows(spec, seed=0)
    again, _, _ = select_rows(spec, seed=0)
    assert ds["id"] == again["id"] and total > len(ds)
    english = [r for r in ds if r["language"] is None]
    stems = {r["id"].split("#")[0] for r in english if "#cut" in r["id"]}
    plain = [r for r in english if r["id"].split("#")[0] not in stems]
    bands = Counter(band_of(len(r["response"].split()), spec.response_bands) for r in plain)
    assert set(bands.values()) == {spec.english_rows // len(spec.response_bands)}
    languages = Counter(r["language"] for r in ds if r["language"] is not None)
    assert languages == dict.fromkeys(spec.crosslingual_languages, spec.crosslingual_items)
    assert spec.crosslingual_items >= 250  # issue 18: hundreds of rows per language, not 15


def test_crosslingual_rows_share_one_english_prompt_per_item() -> None:
    """Each XQuAD item: one English prompt, answered once per language, in that language."""
    from treasure.annotate.language import LanguageAnnotator
    from treasure.crosslingual import CrossLingualConfig, crosslingual_rows

    config = CrossLingualConfig(n_items=20, seed=3)
    rows = crosslingual_rows(config)
    assert rows == crosslingual_rows(config) and len(rows) == 20 * len(config.languages)
    items: dict[str, list[dict]] = {}
    for row in rows:
        items.setdefault(row["id"].rsplit(":", 1)[0], []).append(row)
    assert len(items) == 20
    for group in items.values():
        assert [r["language"] for r in group] == list(config.languages)
        base = {r["prompt"].split("?")[0] for r in group}
        assert len(base) == 1  # the same English question for every language
        english = group[0]["response"]
        assert english not in group[0]["prompt"]  # the answer is not a copy of the prompt
        assert all(config.min_words <= len(r["response"].split()) <= config.max_words for r in group)
    detector = LanguageAnnotator(Taxonomy.default())
    detected = [detector.detect(r["response"]) for r in rows]
    agree = sum(d == r["language"] for d, r in zip(detected, rows, strict=True))
    assert agree / len(rows) >= 0.95
    asked = [r for r in rows if "Answer in" in r["prompt"] or "Respond in" in r["prompt"]]
    assert asked and all(r["language"] in r["prompt"] for r in asked)


def test_length_ladders_are_one_prompt_cut_after_whole_sentences_at_spread_lengths() -> None:
    """One prompt at several lengths: the shorter answers are the long one's first sentences, cut at
    clean sentence ends, and together the ladders cover every length bucket, not three clusters."""
    spec = RECIPES["smollm2"]
    ds, _, _ = select_rows(spec, seed=0)
    groups: dict[str, dict[str, dict]] = {}
    for row in ds:
        if row["language"] is None:
            stem, _, cut = row["id"].partition("#")
            groups.setdefault(stem, {})[cut] = row
    ladders = [g for g in groups.values() if len(g) > 1]
    assert 100 <= len(ladders) <= spec.contrast_rows
    lengths = []
    for group in ladders:
        assert 3 <= len(group) <= spec.ladder_rungs + 1 and "" in group
        assert len({row["prompt"] for row in group.values()}) == 1
        full = group[""]["response"]
        words = sorted(len(row["response"].split()) for row in group.values())
        assert len(set(words)) == len(words)  # every rung a different length
        lengths += words
        for key, row in group.items():
            answer = row["response"]
            if key:
                assert full.startswith(answer) and answer[-1] in ".!?", answer
                assert not answer.split()[-1][:-1].isdigit(), "a cut never ends on a list label"
                assert len(answer.split()) >= spec.ladder_min_words
    deciles = Counter(min(n // 10, 10) for n in lengths)
    assert all(deciles[d] >= 0.03 * len(lengths) for d in range(1, 10))  # spread, no gaps


def test_a_stage_done_under_another_recipe_is_redone(tmp_path: Path) -> None:
    console = Console(quiet=True)
    calls: list[str] = []
    tiny = DemoConfig(out_dir=tmp_path, recipe="tiny")
    run_stage("s", tmp_path / "s", lambda: calls.append("tiny") or {}, tiny, console)
    run_stage("s", tmp_path / "s", lambda: calls.append("tiny again") or {}, tiny, console)
    smol = DemoConfig(out_dir=tmp_path, recipe="smollm2")
    run_stage("s", tmp_path / "s", lambda: calls.append("smollm2") or {}, smol, console)
    assert calls == ["tiny", "smollm2"]
    assert json.loads((tmp_path / "s" / ".done").read_text())["key"] == smol.key("s") != tiny.key("s")
    with pytest.raises(TreasureError, match="valid: smollm2, tiny"):
        DemoConfig(recipe="huge")
