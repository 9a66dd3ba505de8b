"""The demo's training rows: response bands, length ladders (a long answer cut after whole sentences),
cross-lingual XQuAD rows; and the `length_bucket` cut points taken from them."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import datasets
from rich.console import Console
from rich.table import Table

from treasure import io
from treasure.bundled import load_bundled
from treasure.demo.recipes import DemoConfig, DemoRecipe


def select_rows(spec: DemoRecipe, seed: int) -> tuple[datasets.Dataset, int, list[Any]]:
    """The demo's training rows: short English rows (capped), plus short rows of each other language."""
    english, rejected = load_bundled(groups=("train",))
    total = len(english)
    english = english.filter(
        lambda row: (
            len(row["prompt"].split()) <= spec.max_prompt_words
            and len(row["response"].split()) <= spec.max_response_words
        )
    )
    english = english.shuffle(seed=seed)
    parts = []
    for index, (low, high) in enumerate(spec.response_bands):
        band = english.filter(lambda row, lo=low, hi=high: lo <= len(row["response"].split()) <= hi)
        share = min((spec.english_rows or len(band)) // len(spec.response_bands), len(band))
        parts.append(band.select(range(share)))
        if spec.contrast_rows and index == len(spec.response_bands) - 1:  # the longest band, rows not taken
            source = band.select(range(share, min(share + spec.contrast_rows, len(band))))
            parts.append(length_ladder(source, spec.ladder_rungs, spec.ladder_min_words))
    if not spec.response_bands:
        parts.append(english.select(range(min(spec.english_rows or len(english), len(english)))))
    if spec.crosslingual_items:
        from treasure.crosslingual import CrossLingualConfig, crosslingual_rows

        rows = crosslingual_rows(
            CrossLingualConfig(
                n_items=spec.crosslingual_items, languages=spec.crosslingual_languages, seed=seed
            )
        )
        file = "multilingual_instruct/xquad_parallel.jsonl.gz"
        features = english.features.copy()
        features["language"] = datasets.Value("string")
        rows = [{c: {**row, "file": file}.get(c) for c in features} for row in rows]
        parts.append(datasets.Dataset.from_list(rows, features=features))
        total += len(rows)
    if spec.rows_per_language:
        other, more_rejected = load_bundled(groups=("multilingual",))
        total += len(other)
        rejected += more_rejected
        other = other.filter(
            lambda row: len(row["prompt"]) + len(row["response"]) <= spec.max_multilingual_chars
        ).shuffle(seed=seed)
        for language in sorted(set(other["language"])):
            rows = other.filter(lambda row, language=language: row["language"] == language)
            parts.append(rows.select(range(min(spec.rows_per_language, len(rows)))))
    if any("language" in part.column_names for part in parts):  # English rows: detected at annotation
        parts = [
            part if "language" in part.column_names else part.add_column("language", [None] * len(part))
            for part in parts
        ]
    ds = datasets.concatenate_datasets(parts).shuffle(seed=seed)
    return ds, total, rejected


SENTENCE_END = re.compile(r"[.!?]$")
LIST_LABEL = re.compile(r"(^|\s)(\d+|[A-Za-z])[.)]$")  # "1." or "a)": spaCy makes them sentences
CUT = "#cut"  # a ladder copy's id: the full row's id, CUT, the copy's number


def ladder_stem(row_id: str) -> tuple[str, str]:
    """(the ladder's id, "cut<k>") for a ladder copy's id, (the id, "") for any other row."""
    stem, mark, number = row_id.partition(CUT)
    return stem, f"cut{number}" if mark else ""


def length_ladder(rows: datasets.Dataset, rungs: int, min_words: int) -> datasets.Dataset:
    """Each row, plus up to `rungs` copies cut after whole sentences (spaCy sentencizer), spread evenly
    over the row's clean cuts (ending a sentence, not on a list label or a colon, at least `min_words`
    words); ids of copies get `#cut<k>`. One prompt is so seen with many answer lengths, and only the
    length markers (`length_tokens`, `length_bucket`) tell them apart. Rows with fewer than two clean cuts
    are left out."""
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    kept: list[dict[str, Any]] = []
    for row in rows:
        sentences = [s.text_with_ws for s in nlp(row["response"]).sents]
        prefixes = ("".join(sentences[:end]).strip() for end in range(1, len(sentences)))
        cuts = [
            text
            for text in prefixes
            if len(text.split()) >= min_words and SENTENCE_END.search(text) and not LIST_LABEL.search(text)
        ]
        if len(cuts) < 2:
            continue
        if len(cuts) > rungs:
            cuts = [cuts[round(i * (len(cuts) - 1) / (rungs - 1))] for i in range(rungs)]
        copies = [{**row, "id": f"{row['id']}{CUT}{k}", "response": cut} for k, cut in enumerate(cuts)]
        kept += [row, *copies]
    return datasets.Dataset.from_list(kept, features=rows.features)


def data_summary(console: Console, out: Path, config: DemoConfig) -> dict[str, Any]:
    """Write the demo's training rows to one JSONL and print rows per file/source and field coverage.

    Only short rows are kept (`max_prompt_words`, `max_response_words`): the CPU model then sees whole
    examples (answer and end-of-turn token) within its window and its time budget.
    """
    spec = config.spec
    ds, total, rejected = select_rows(spec, config.seed)
    console.print(
        f"kept {len(ds)} of {total} bundled rows (prompt ≤ {spec.max_prompt_words} words, "
        f"response ≤ {spec.max_response_words} words"
        + (f"; {spec.rows_per_language} rows per other language" if spec.rows_per_language else "")
        + (
            f"; {spec.crosslingual_items} cross-lingual XQuAD items × {len(spec.crosslingual_languages)} "
            f"answer languages ({', '.join(spec.crosslingual_languages)})"
            if spec.crosslingual_items
            else ""
        )
        + ")"
    )
    io.save(ds.remove_columns(["file"]), out / "bundled.jsonl")
    by_file = Counter(zip(ds["file"], ds["source"], strict=True))
    table = Table(title=f"training data: {len(ds)} rows")
    for column in ("file", "source", "rows"):
        table.add_column(column, justify="right" if column == "rows" else "left")
    for (file, source), count in sorted(by_file.items()):
        table.add_row(file, source, str(count))
    console.print(table)
    coverage = Table(title="field coverage")
    for column in ("field", "rows with a value", "share"):
        coverage.add_column(column)
    for name in ds.column_names:
        filled = sum(v is not None and v != "" for v in ds[name])
        coverage.add_row(name, str(filled), f"{filled / len(ds):.0%}")
    console.print(coverage)
    for error in rejected:
        console.print(f"[yellow]skipped[/] {error}")
    return {"rows": len(ds), "bundled_rows": total, "skipped": len(rejected)}


def banded_thresholds(data_file: Path) -> tuple[int, ...]:
    """Tertile cut points of `length_tokens` (the annotator's count) over the English rows drawn equally
    from the response bands: rows with a given language and the length ladders (`length_ladder`: a
    long row and its cuts, spread over every length) are left out."""
    from treasure.annotate.buckets import quantile_thresholds
    from treasure.annotate.rules import LengthCounter

    rows = [row for row in io.read_records(data_file) if row.get("language") is None]
    stems = [ladder_stem(row["id"]) for row in rows]
    ladders = {stem for stem, cut in stems if cut}
    counter = LengthCounter()
    lengths = [
        counter.count(row["response"], "English")[0]
        for row, (stem, _) in zip(rows, stems, strict=True)
        if stem not in ladders
    ]
    return quantile_thresholds(lengths, 3)
