"""README's demo figures come from files: the "What it measured" block is rendered from a recorded run's
metrics.json + timings.json (`treasure.demo_results`), and the recipe figures in the prose equal
`configs/smollm2_demo.yaml` and `treasure.demo.RECIPES["smollm2"]`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from treasure import demo_results
from treasure.demo import RECIPES
from treasure.demo_results import END, START, DemoRun, render, replace_block
from treasure.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RECORDED_RUN = ROOT / "docs" / "demo-run"

JUDGE = "reward-model: ridge/quality.npz (tie margin 0.1)"


def _cells(marker: str, value: str, rates: tuple[float, float, float]) -> list[dict[str, Any]]:
    modes = ("conditioning", "controlling", "controlling G=1.5")
    return [
        {"marker": marker, "value": value, "mode": m, "rate": r, "n": 20}
        for m, r in zip(modes, rates, strict=True)
    ]


def fixture_metrics() -> dict[str, Any]:
    """A small metrics.json of the demo's shape with numbers chosen to tell every cell apart."""
    row = {"n": 100, "judge": JUDGE}
    return {
        "suites": {
            "length_instruct": {
                "limits": {"median": 33.0, "min": 5, "max": 81},
                "rows": [
                    {
                        **row,
                        "name": "baseline",
                        "label": "Baseline",
                        "violation_rate": 0.4,
                        "win_rate": 0.5,
                        "judge": "reference row (50% by construction)",
                    },
                    {
                        **row,
                        "name": "conditioning",
                        "label": "TreasureMarked",
                        "violation_rate": 0.3,
                        "win_rate": 0.56,
                    },
                    {**row, "name": "fixed", "label": "+fixed", "violation_rate": 0.04, "win_rate": 0.61},
                    {
                        **row,
                        "name": "fixed-budget",
                        "label": "+fixed +budget",
                        "violation_rate": 0.0,
                        "win_rate": 0.7,
                    },
                    {
                        **row,
                        "name": "fixed-g1.5",
                        "label": "+fixed G=1.5",
                        "violation_rate": 0.12,
                        "win_rate": 0.525,
                    },
                ],
            },
            "adherence": {
                "modes": ["conditioning", "controlling", "controlling G=1.5"],
                "cells": [
                    *_cells("length_bucket", "concise", (0.6, 0.95, 1.0)),
                    *_cells("length_bucket", "medium", (0.3, 0.85, 0.8)),
                    *_cells("length_bucket", "long", (0.1, 0.75, 0.9)),
                    *_cells("language", "Spanish", (0.0, 0.85, 0.9)),
                    *_cells("language", "German", (0.05, 0.75, 0.95)),
                ],
                "lengths": {
                    "controlling": {"concise": [10, 12, 14, 30], "medium": [40, 41], "long": [90, 100, 110]}
                },
            },
            "language_request": {
                "rows": [
                    {"name": "baseline", "label": "Baseline", "pass_rate": {"overall": 0.8}},
                    {"name": "conditioning", "label": "TreasureMarked", "pass_rate": {"overall": 0.925}},
                ],
                "delta": {"overall": 0.125},
            },
            "win_rate": {
                "judge": JUDGE,
                "marked_vs_baseline": {"win": 0.3, "tie": 0.5, "loss": 0.2, "win_rate": 0.55, "n": 100},
            },
        }
    }


FIXTURE_TIMINGS = {
    "prepare model": 0.3,
    "annotate": 21.6,
    "train marked": 1200.4,
    "evaluate": 1799.0,
    "show answers": 99.5,
}


def fixture_block() -> str:
    return render(DemoRun(fixture_metrics(), FIXTURE_TIMINGS))


def test_stage_times_and_the_text_tables_hold_the_metrics_numbers() -> None:
    block = fixture_block()
    # 21.6 + 1200.4 + 1799 + 99.5 + 0.3 = 3120.8 s; stages under a second are left out
    assert block.startswith(
        "Stage times: annotate 22 s, train marked 1,200 s, evaluate 1,799 s, answers 100 s: "
        "about 52 minutes.\n"
    )
    lines = block.splitlines()
    assert " Length instructions (AlpacaEval-LI; limits N median 33 words, 5–81)" in lines
    assert " Baseline                  40.0%      50.0%   100   reference row (50% by construction)" in lines
    assert f" TreasureMarked            30.0%      56.0%   100   {JUDGE}" in lines
    assert " +fixed                     4.0%      61.0%   100   (length_tokens = N, learned)" in lines
    assert " +fixed G=1.5              12.0%      52.5%   100   (marker guidance)" in lines
    assert " length_bucket   medium          30%            85%           80%" in lines
    assert " language        German           5%            75%           95%" in lines
    assert (
        " Language requested in the prompt (the paper's protocol): Baseline 80.0%, TreasureMarked 92.5% "
        "(+12.5 points)" in lines
    )


def test_a_cached_stage_shows_the_time_it_took_when_it_ran() -> None:
    line = render(DemoRun(fixture_metrics(), FIXTURE_TIMINGS, cached=("train marked",))).splitlines()[0]
    assert line.startswith("Stage times: annotate 22 s, train marked 1,200 s (cached), evaluate 1,799 s")
    assert line.endswith("about 52 minutes.")


def test_adherence_shows_the_readable_share_in_brackets_when_measured() -> None:
    metrics = fixture_metrics()
    for cell in metrics["suites"]["adherence"]["cells"]:
        cell["readable_rate"] = round(cell["rate"] / 2, 4)
    lines = render(DemoRun(metrics, FIXTURE_TIMINGS)).splitlines()
    assert " Marker adherence (answer re-annotated; in brackets: on target and readable, no loop)" in lines
    assert " length_bucket   medium          30% (15)            85% (42)           80% (40)" in lines


def test_the_targets_table_computes_each_verdict() -> None:
    rows = {
        line.split(" | ")[0].removeprefix("| "): line for line in fixture_block().splitlines() if "|" in line
    }
    # German 75% < 80%: not met, although Spanish is 85%
    assert rows["language under controlling, English prompts, Spanish / German"] == (
        "| language under controlling, English prompts, Spanish / German | 85% / 75% "
        "(G=1.5: 90% / 95%; conditioning 0% / 5%) | ≥ 80%: **not met** |"
    )
    # mean of 95, 85, 75 = 85% ≥ 85%: met; guided (100 + 80 + 90) / 3 = 90%
    assert (
        "| 85% (95 / 85 / 75%; G=1.5 90%) | ≥ 85%: **met** |"
        in rows["length_bucket adherence under controlling, mean of three"]
    )
    # medians 13 / 40.5 / 100: 100 / 13 = 7.69×
    assert rows["median length_tokens under controlling concise / medium / long"].endswith(
        "| 13 / 40.5 / 100 | long ≥ 3× concise: **met** (7.69×) |"
    )
    # +fixed 4% ≤ 5% and < TreasureMarked 30% < Baseline 40%
    assert rows["length-instruct violation Baseline / TreasureMarked / +fixed"].endswith(
        "| 40% / 30% / 4% | +fixed ≤ 5% and +fixed < TreasureMarked < Baseline: "
        "TreasureMarked < Baseline **met**; +fixed **met** |"
    )
    assert "| 0% violations, win rate 70% |" in rows["+fixed +budget (a guarantee, not learned)"]
    assert rows["paper language protocol, TreasureMarked − Baseline"].endswith(
        "| +12.5 points (92.5% vs 80%) | ≥ +10: **met** |"
    )
    # 50% ties: under the 90% from which the judge "cannot separate" them
    assert rows["win rate marked vs baseline, plain prompts"].endswith("| 55% (50 ties) | no target |")


def test_write_then_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps(fixture_metrics()), encoding="utf-8")
    (run / "timings.json").write_text(json.dumps(FIXTURE_TIMINGS), encoding="utf-8")
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n\n{START}\nold figures\n{END}\n\nafter\n", encoding="utf-8")
    assert demo_results.main([str(run), "--check", str(readme)]) == 1
    assert "differs" in capsys.readouterr().err
    assert demo_results.main([str(run), "--write", str(readme)]) == 0
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("# x\n\nbefore\n\n") and text.endswith(f"{END}\n\nafter\n")
    assert "old figures" not in text and fixture_block() in text
    assert demo_results.main([str(run), "--check", str(readme)]) == 0
    with pytest.raises(ValueError, match="no <!-- demo-results:start -->"):
        replace_block("no markers here", "x")


def test_readme_has_one_demo_results_block() -> None:
    text = README.read_text(encoding="utf-8")
    assert text.count(START) == 1 and text.count(END) == 1 and text.index(START) < text.index(END)


@pytest.mark.parametrize(
    ("run_dir", "block", "page"),
    [
        (RECORDED_RUN, "", README),
        (RECORDED_RUN.with_name("demo-run-full"), "full", ROOT / "docs" / "smollm2-full.md"),
    ],
)
def test_readme_demo_results_match_recorded_run(run_dir: Path, block: str, page: Path) -> None:
    """README's block equals the one rendered from the run recorded in docs/demo-run/ (the demo), and
    docs/smollm2-full.md's the one from docs/demo-run-full/ (`--recipe smollm2-full`)."""
    if not (run_dir / "metrics.json").is_file():
        pytest.skip(f"{run_dir}/metrics.json is absent: no recorded run to check against yet")
    text = page.read_text(encoding="utf-8")
    assert replace_block(text, render(DemoRun.load(run_dir)), block) == text, (
        f"{page.name}'s demo-results block {block!r} differs from {run_dir}; run `python scripts/"
        f"demo_results.py {run_dir.relative_to(ROOT)} --write {page.relative_to(ROOT)} --block {block}`"
    )


# ---------------------------------------------------------------- recipe figures in the prose


def _one(pattern: str, text: str) -> tuple[str, ...]:
    found = re.findall(pattern, text)
    assert found, f"README no longer says {pattern!r}"
    assert len(set(found)) == 1, f"README gives different figures for {pattern!r}: {found}"
    return found[0] if isinstance(found[0], tuple) else (found[0],)


def test_readme_recipe_figures_match_the_recipe() -> None:
    text = " ".join(README.read_text(encoding="utf-8").split())  # one line: figures may wrap
    train = TrainConfig.from_file("smollm2_demo", train_dir="t", output_dir="o")
    spec = RECIPES["smollm2"]
    (lr,) = _one(r"full fine-tuning, lr ([\d.e-]+)", text)
    assert float(lr) == train.learning_rate and not train.lora
    steps, batch = _one(r"(\d+) steps of (\d+) random rows", text)
    assert (int(steps), int(batch)) == (train.max_steps, train.per_device_train_batch_size)
    assert train.train_sampling_strategy == "random"
    assert _one(r"(\d+) steps × (\d+), validation loss", text) == (steps, batch)  # the run shown: same recipe
    (weight,) = _one(r"decisions weighted (\d+)×", text)
    assert float(weight) == train.decision_weight
    (max_length,) = _one(r"`max_length` (\d+) with longer rows left out", text)
    assert int(max_length) == train.max_length and train.long_rows == "drop"
    dataset, marker = _one(r"dataset / marker dropout ([\d.]+) / ([\d.]+)", text)
    assert (float(dataset), float(marker)) == (spec.dataset_dropout, spec.marker_dropout)
    (markers,) = _one(r"\*\*build\*\* a marked set \(markers ((?:`\w+`(?:, )?)+);", text)
    assert tuple(re.findall(r"`(\w+)`", markers)) == spec.markers
    (prompt_words,) = _one(r"prompts ≤ (\d+) words", text)
    assert int(prompt_words) == spec.max_prompt_words
    bands = _one(r"three length bands \((\d+)–(\d+), (\d+)–(\d+) and (\d+)–(\d+) words\)", text)
    assert tuple(int(x) for x in bands) == tuple(x for band in spec.response_bands for x in band)
    (per_band,) = _one(r"(\d+) answers from each of three length", text)
    assert spec.english_rows is not None and int(per_band) * len(spec.response_bands) == spec.english_rows
    (items,) = _one(r"(\d+) XQuAD items", text)
    assert int(items) == spec.crosslingual_items
    assert _one(r"(\d+) AlpacaEval prompts", text) == (str(spec.eval_prompts),)
    (per_value,) = _one(r"\((\d+) prompts per value", text)
    assert int(per_value) == spec.n_adherence_prompts
    assert re.search(rf"`language` × {len(spec.adherence_languages)} under controlling", text)
    scales = {float(g) for g in re.findall(r"G=(\d+(?:\.\d+)?)", text)}
    assert scales and scales <= set(spec.guidance_scales), scales
