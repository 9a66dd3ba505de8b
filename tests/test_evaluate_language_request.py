"""The language-request suite: the request sentence, pass rates from the language annotator, metrics.json,
the report and the terminal table, and the whole suite on the session tiny models."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from treasure.artifacts import ModelDir
from treasure.errors import MarkerError, TreasureError
from treasure.evaluate import EvalConfig, evaluate, paper_table
from treasure.evaluate.context import EvalContext
from treasure.evaluate.prompts import alpaca_eval, sample
from treasure.evaluate.reannotate import reannotate
from treasure.evaluate.report import render_html
from treasure.evaluate.suites.language_request import (
    REQUEST_TEMPLATES,
    pass_rate,
    request_prompts,
    run_language_request,
)
from treasure.generate import GenerationConfig
from treasure.taxonomy import Taxonomy

SPANISH = (
    "La fotosíntesis es el proceso mediante el cual las plantas verdes transforman la luz del sol en "
    "energía química. Las hojas absorben dióxido de carbono y agua, y liberan oxígeno a la atmósfera."
)
ENGLISH = (
    "Photosynthesis is the process by which green plants turn sunlight into chemical energy. The leaves "
    "take in carbon dioxide and water, and they release oxygen into the air around them."
)


def test_request_prompts_are_seeded_and_name_the_language() -> None:
    prompts = [p.prompt for p in alpaca_eval()[:40]]
    texts, requests = request_prompts(prompts, "Spanish", seed=3)
    assert (texts, requests) == request_prompts(prompts, "Spanish", seed=3)  # same seed, same prompts
    assert request_prompts(prompts, "Spanish", seed=4)[1] != requests  # the phrasing is drawn per prompt
    assert set(requests) == {t.format(lang="Spanish") for t in REQUEST_TEMPLATES}  # every phrasing used
    for prompt, text, request in zip(prompts, texts, requests, strict=True):
        assert text == f"{prompt}\n\n{request}" and "Spanish" in request
    german, _ = request_prompts(prompts, "German", seed=3)
    assert all(t.endswith("German.") and "Spanish" not in t for t in german)


def test_pass_rate_counts_only_the_requested_language() -> None:
    assert pass_rate(["Spanish", "English", None, "Spanish"], "Spanish") == 0.5
    assert pass_rate([], "Spanish") == 0.0


class _CannedRuns:
    """Stands in for GenerationRuns: the marked model answers in Spanish, the baseline in English."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, list[str], str]] = []

    def run(self, name: str, model: str, prompts: list[str], mode: str = "conditioning", *rest: Any):
        self.calls.append((name, model, list(prompts), mode))
        text = SPANISH if model == "marked" else ENGLISH
        return [{"response": text, "markers": {}, "markers_error": None, "n_tokens": 9} for _ in prompts]


def test_run_scores_the_annotators_language(tmp_path: Path) -> None:
    for name in ("m", "b"):
        (tmp_path / name).mkdir()
    config = EvalConfig(
        model_dir=tmp_path / "m",
        baseline_dir=tmp_path / "b",
        out_dir=tmp_path / "o",
        suites="language-request",
        n_adherence_prompts=4,
        request_languages=("spanish", "German"),
        progress=False,
    )
    ctx = EvalContext(config)
    ctx.__dict__["taxonomy"] = Taxonomy.default()  # the empty model dirs have none
    runs = _CannedRuns()
    ctx.runs = runs  # type: ignore[assignment]
    section = run_language_request(ctx)
    assert section["languages"] == ["Spanish", "German"]  # canonical taxonomy values
    prompts = sample(ctx.pool, 4, config.seed, "adherence")  # adherence's prompts
    assert section["prompt_ids"] == [p.id for p in prompts]
    assert [(c[0], c[1], c[3]) for c in runs.calls] == [
        ("lang-baseline-Spanish", "baseline", "conditioning"),
        ("lang-marked-Spanish", "marked", "conditioning"),  # no markers: the model infers them
        ("lang-baseline-German", "baseline", "conditioning"),
        ("lang-marked-German", "marked", "conditioning"),
    ]
    assert (
        runs.calls[0][2] == runs.calls[1][2] == request_prompts([p.prompt for p in prompts], "Spanish", 0)[0]
    )
    baseline, marked = section["rows"]
    assert (baseline["label"], marked["label"]) == ("Baseline", "TreasureMarked")
    assert baseline["pass_rate"] == {"Spanish": 0.0, "German": 0.0, "overall": 0.0}
    assert marked["pass_rate"] == {"Spanish": 1.0, "German": 0.0, "overall": 0.5}
    assert marked["n"] == {"Spanish": 4, "German": 4, "overall": 8}
    assert section["delta"] == {"Spanish": 1.0, "German": 0.0, "overall": 0.5}
    assert section["detected"]["conditioning"]["German"] == ["Spanish"] * 4
    assert section["detected"]["baseline"]["Spanish"] == ["English"] * 4
    ctx.runs = _CannedRuns()  # type: ignore[assignment]
    ctx.config = replace(config, request_languages=("Klingon",))
    with pytest.raises(MarkerError, match="invalid value 'Klingon' for marker 'language'"):
        run_language_request(ctx)
    with pytest.raises(TreasureError, match="request_languages is empty"):
        EvalConfig(model_dir=Path("m"), out_dir=Path("o"), suites="language-request", request_languages=())


def _section() -> dict[str, Any]:
    return {
        "languages": ["Spanish", "German"],
        "templates": list(REQUEST_TEMPLATES),
        "rows": [
            {"name": "baseline", "label": "Baseline", "pass_rate": {"Spanish": 0.1, "German": 0.2,
             "overall": 0.15}, "n": {"Spanish": 10, "German": 10, "overall": 20}},
            {"name": "conditioning", "label": "TreasureMarked", "pass_rate": {"Spanish": 0.6,
             "German": 0.3, "overall": 0.45}, "n": {"Spanish": 10, "German": 10, "overall": 20}},
        ],
        "delta": {"Spanish": 0.5, "German": 0.1, "overall": 0.3},
    }  # fmt: skip


def test_report_and_terminal_table() -> None:
    page = render_html({"suites": {"language_request": _section()}})
    assert re.findall(r"<h2>(.*?)</h2>", page) == ["Language requested in the prompt"]
    row = re.search(r"<tr><td>TreasureMarked</td>(.*?)</tr>", page)
    assert row and re.findall(r"<td[^>]*>(.*?)</td>", row.group(1)) == ["60.0%", "30.0%", "45.0%", "20"]
    assert "+50.0 pts" in page and "+30.0 pts" in page
    console = Console(width=140, record=True, color_system=None)
    console.print(paper_table({"suites": {"language_request": _section(), "length_instruct": {"rows": []}}}))
    text = console.export_text()
    assert "Length instructions" in text and "Language requested in the prompt" in text
    assert re.findall(r"\d+\.\d%", text) == ["10.0%", "20.0%", "15.0%", "60.0%", "30.0%", "45.0%"]
    assert "+50.0 pts" in text
    alone = Console(width=140, record=True, color_system=None)
    alone.print(paper_table({"suites": {"language_request": _section()}}))
    assert "Length instructions" not in alone.export_text()


@pytest.mark.slow
def test_language_request_on_tiny_models(tiny_model_dir: Path, tiny_baseline_dir: Path, tmp_path: Path):
    out = tmp_path / "report"
    config = EvalConfig(
        model_dir=tiny_model_dir,
        baseline_dir=tiny_baseline_dir,
        out_dir=out,
        suites="language-request",
        n_adherence_prompts=4,
        request_languages=("Spanish", "German"),
        generation=GenerationConfig(max_new_tokens=48, temperature=0.0, batch_size=8),
        progress=False,
    )
    metrics = evaluate(config)
    section = json.loads((out / "metrics.json").read_text("utf-8"))["suites"]["language_request"]
    assert section == metrics["suites"]["language_request"]
    assert metrics["judge"] is None
    assert section["languages"] == ["Spanish", "German"]
    assert [r["label"] for r in section["rows"]] == ["Baseline", "TreasureMarked"]
    tax = ModelDir.load(tiny_model_dir).taxonomy
    pool = {p.id: p.prompt for p in alpaca_eval()}
    prompts = [pool[i] for i in section["prompt_ids"]]
    assert len(prompts) == 4
    recount: dict[str, dict[str, float]] = {}
    for row, model in zip(section["rows"], ("baseline", "marked"), strict=True):
        hits = 0
        for language in ("Spanish", "German"):
            texts, requests = request_prompts(prompts, language, config.seed)
            assert section["requests"][language] == requests
            lines = (out / "generations" / f"lang-{model}-{language}.jsonl").read_text("utf-8").splitlines()
            answers = [json.loads(line)["response"] for line in lines]
            assert len(answers) == 4
            detected = [r.get("language") for r in reannotate(texts, answers, ["language"], tax)]
            assert section["detected"][row["name"]][language] == detected
            passed = sum(d == language for d in detected)
            assert row["pass_rate"][language] == round(passed / 4, 4)
            hits += passed
        assert row["pass_rate"]["overall"] == round(hits / 8, 4)
        assert row["n"] == {"Spanish": 4, "German": 4, "overall": 8}
        recount[row["name"]] = row["pass_rate"]
    for key in ("Spanish", "German", "overall"):
        difference = recount["conditioning"][key] - recount["baseline"][key]
        assert section["delta"][key] == round(difference, 4)
    page = (out / "report.html").read_text("utf-8")
    assert "Language requested in the prompt" in page
    assert evaluate(config)["suites"] == metrics["suites"]  # cached answers, same numbers
