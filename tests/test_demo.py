"""The demo's data recipe and stage cache (the full demo runs with `make demo`, not in the tests)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from rich.console import Console

from treasure.demo import RECIPES, DemoConfig, run_stage, select_rows
from treasure.errors import TreasureError


def test_smollm2_recipe_rows_are_banded_multilingual_and_seeded() -> None:
    spec = RECIPES["smollm2"]
    ds, total, _ = select_rows(spec, seed=0)
    again, _, _ = select_rows(spec, seed=0)
    assert ds["id"] == again["id"] and total > len(ds)
    english = [r for r in ds if r["language"] is None]
    words = [len(r["response"].split()) for r in english]
    bands = Counter(next(i for i, (lo, hi) in enumerate(spec.response_bands) if lo <= w <= hi) for w in words)
    assert set(bands.values()) == {spec.english_rows // len(spec.response_bands)}
    languages = Counter(r["language"] for r in ds if r["language"] is not None)
    assert len(languages) == 7 and set(languages.values()) == {spec.rows_per_language}


def test_a_stage_done_under_another_recipe_is_redone(tmp_path: Path) -> None:
    console = Console(quiet=True)
    calls: list[str] = []
    tiny = DemoConfig(out_dir=tmp_path, recipe="tiny")
    run_stage("s", tmp_path / "s", lambda: calls.append("tiny") or {}, tiny, console)
    run_stage("s", tmp_path / "s", lambda: calls.append("tiny again") or {}, tiny, console)
    smol = DemoConfig(out_dir=tmp_path, recipe="smollm2")
    run_stage("s", tmp_path / "s", lambda: calls.append("smollm2") or {}, smol, console)
    assert calls == ["tiny", "smollm2"]
    assert json.loads((tmp_path / "s" / ".done").read_text())["key"] == smol.key() != tiny.key()
    with pytest.raises(TreasureError, match="valid: smollm2, tiny"):
        DemoConfig(recipe="huge")
