"""Session fixtures that train tiny models once for every test that needs one (owned by build/train).

`tiny_model_dir` is a marked tiny model, `tiny_baseline_dir` a baseline one, both trained on bundled
rows with short responses (so the length buckets fit the short max_length). Until `treasure.annotate`
is used here, rows are annotated by `simple_annotate` (word counts and tertile buckets): a test helper,
not a second annotator.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from treasure import io
from treasure.artifacts import STATS, TAXONOMY, sidecar
from treasure.build import BuildConfig, build
from treasure.bundled import load_bundled
from treasure.taxonomy import Taxonomy, with_thresholds
from treasure.train import TrainConfig, train

FIXTURE_ROWS = 3000
LENGTH_BANDS = ((1, 10), (22, 40), (70, 400))
FIXTURE_MARKERS = ("length_bucket", "length_tokens", "source")
FIXTURE_DROPOUT = (0.1, 0.1)
SENTENCE_END = re.compile(r"[.!?]+(\s|$)")


def simple_annotate(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Taxonomy]:
    """Rule markers for tests: length_tokens = words, tertile length_bucket, sentences, paragraphs."""
    words = [len(r["response"].split()) for r in rows]
    cuts = tuple(int(x) for x in np.percentile(words, [100 / 3, 200 / 3]))
    tax = with_thresholds(Taxonomy.default(), "length_bucket", cuts)
    bucket = tax["length_bucket"]
    out = []
    for row, n in zip(rows, words, strict=True):
        text = row["response"]
        marked = {
            "id": row["id"],
            "prompt": row["prompt"],
            "response": text,
            "source": row["source"],
            "length_tokens": n,
            "length_bucket": bucket.bucket_of(n),
            "length_sentences": max(1, len(SENTENCE_END.findall(text))),
            "length_paragraphs": len([p for p in re.split(r"\n\s*\n", text) if p.strip()]),
        }
        if row.get("quality") is not None:
            marked["quality"] = round(float(row["quality"]), 2)
        out.append(marked)
    return out, tax


def write_annotated(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Annotated JSONL plus its `.taxonomy.yaml` and `.stats.json` sidecars, as `treasure annotate` writes."""
    annotated, tax = simple_annotate(rows)
    io.write_jsonl(annotated, path)
    tax.save(sidecar(path, TAXONOMY))
    stats = {"n_rows": len(annotated), "thresholds": {"length_bucket": list(tax["length_bucket"].thresholds)}}
    sidecar(path, STATS).write_text(json.dumps(stats), encoding="utf-8")
    return path


def short_bundled_rows(n: int = FIXTURE_ROWS) -> list[dict[str, Any]]:
    """The first `n` bundled rows (file order) with a short prompt and a response length in LENGTH_BANDS.

    Gaps between the bands keep the three tertile buckets far apart, so a tiny model learns them fast.
    """
    ds, _ = load_bundled()
    rows = []
    for row in ds:
        words = len(row["response"].split())
        if any(lo <= words <= hi for lo, hi in LENGTH_BANDS) and len(row["prompt"].split()) <= 30:
            rows.append(row)
            if len(rows) == n:
                break
    return rows


@pytest.fixture(scope="session")
def annotated_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_annotated(tmp_path_factory.mktemp("annotated") / "annotated.jsonl", short_bundled_rows())


def _build(path: Path, out: Path, baseline: bool) -> Path:
    config = BuildConfig(
        markers=FIXTURE_MARKERS,
        dataset_dropout=FIXTURE_DROPOUT[0],
        marker_dropout=FIXTURE_DROPOUT[1],
        baseline=baseline,
        seed=0,
        val_fraction=0.03,
        tokenizer=None,
    )
    return build(path, out, config).path


@pytest.fixture(scope="session")
def tiny_train_dir(annotated_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(annotated_path, tmp_path_factory.mktemp("train-marked"), baseline=False)


@pytest.fixture(scope="session")
def tiny_baseline_train_dir(annotated_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(annotated_path, tmp_path_factory.mktemp("train-baseline"), baseline=True)


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_train_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A marked tiny model (trained once per session; see configs/tiny_test.yaml)."""
    out = tmp_path_factory.mktemp("model-marked")
    return train(TrainConfig.from_file("tiny_test", train_dir=tiny_train_dir, output_dir=out)).path


@pytest.fixture(scope="session")
def tiny_baseline_dir(tiny_baseline_train_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A baseline tiny model (no markers anywhere), same rows and recipe."""
    out = tmp_path_factory.mktemp("model-baseline")
    return train(TrainConfig.from_file("tiny_test", train_dir=tiny_baseline_train_dir, output_dir=out)).path
