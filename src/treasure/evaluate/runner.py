"""`evaluate(config)`: run the suites, write `metrics.json` and `report.html`, return the metrics."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from treasure.errors import TreasureError
from treasure.evaluate.adherence import reannotate, run_adherence
from treasure.evaluate.config import EvalConfig
from treasure.evaluate.judge import RewardModelJudge, make_judge, win_rate
from treasure.evaluate.length_instruct import limit_scale, run_length_instruct
from treasure.evaluate.long_tail import split_rows
from treasure.evaluate.prediction import run_marker_prediction
from treasure.evaluate.prompts import EvalPrompt, alpaca_eval, sample, user_prompts
from treasure.evaluate.report import write_report
from treasure.evaluate.runs import GenerationRuns
from treasure.io import atomic_write_text, read_json
from treasure.taxonomy import Taxonomy


def _stats(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "stats.json"
    return read_json(path) if path.is_file() else {}


def _jsonable(config: EvalConfig) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(config), default=str))


def evaluate(config: EvalConfig) -> dict[str, Any]:
    """Run `config.suites` on the marked model (and baseline); write metrics.json + report.html."""
    for path in (config.model_dir, config.baseline_dir):
        if path is not None and not path.is_dir():
            raise TreasureError(f"{path}: model dir not found")
    out = config.out_dir
    out.mkdir(parents=True, exist_ok=True)
    models = {"marked": config.model_dir}
    if config.baseline_dir is not None:
        models["baseline"] = config.baseline_dir
    runs = GenerationRuns(models, out / "generations", config.generation, config.backend, config.progress)
    tax_file = config.model_dir / "taxonomy.yaml"
    tax = Taxonomy.load(tax_file) if tax_file.is_file() else Taxonomy.default()
    stats = _stats(config.model_dir)
    pool: list[EvalPrompt] = user_prompts(config.prompts) if config.prompts else alpaca_eval()
    prompts = sample(pool, config.n_prompts, config.seed, "main")
    suites: dict[str, Any] = {}
    timings: dict[str, float] = {}
    needs_judge = {"length-instruct", "win-rate", "long-tail"} & set(config.suites)
    judge = make_judge(config.judge, out / "judge-cache") if needs_judge else None
    plain_markers = list(dict.fromkeys([*config.prediction_markers, *config.long_tail_markers]))
    labels: list[dict[str, Any]] = []
    if {"marker-prediction", "long-tail"} & set(config.suites):
        began = time.perf_counter()
        labels = reannotate(
            [p.prompt for p in prompts], [p.reference or "" for p in prompts], plain_markers, tax
        )
        timings["label references"] = time.perf_counter() - began
    plain: dict[str, list[dict[str, Any]]] = {}
    if {"win-rate", "marker-prediction", "long-tail"} & set(config.suites):
        plain["marked"] = runs.run("plain-marked", "marked", [p.prompt for p in prompts])
    if {"win-rate", "long-tail"} & set(config.suites):
        plain["baseline"] = runs.run("plain-baseline", "baseline", [p.prompt for p in prompts])

    li = None
    if "length-instruct" in config.suites:
        began = time.perf_counter()
        li = run_length_instruct(runs, judge, prompts, config, limit_scale(config, stats, prompts))
        suites["length_instruct"] = li.section
        timings["length-instruct"] = time.perf_counter() - began
    outcomes: list[float] = []
    if "win-rate" in config.suites or "long-tail" in config.suites:
        texts = [p.prompt for p in prompts]
        marked = [r["response"] for r in plain["marked"]]
        baseline = [r["response"] for r in plain["baseline"]]
        scores = None
        if isinstance(judge, RewardModelJudge):
            scores = (judge.score(texts, marked), judge.score(texts, baseline))
            outcomes = judge.outcomes(*scores)
        else:
            outcomes = judge.compare(texts, marked, baseline)
        suites["win_rate"] = {
            "judge": judge.name,
            "marked_vs_baseline": {
                "win": round(outcomes.count(1.0) / len(outcomes), 4),
                "tie": round(outcomes.count(0.5) / len(outcomes), 4),
                "loss": round(outcomes.count(0.0) / len(outcomes), 4),
                "win_rate": win_rate(outcomes),
                "n": len(outcomes),
            },
        }
        if scores is not None:
            suites["win_rate"]["mean_score"] = {
                "marked": round(sum(scores[0]) / len(scores[0]), 4),
                "baseline": round(sum(scores[1]) / len(scores[1]), 4),
            }
    if "adherence" in config.suites:
        began = time.perf_counter()
        adherence_prompts = sample(pool, config.n_adherence_prompts, config.seed, "adherence")
        suites["adherence"] = run_adherence(runs, adherence_prompts, config, tax)
        timings["adherence"] = time.perf_counter() - began
    if "marker-prediction" in config.suites:
        written = [r["markers"] for r in plain["marked"]]
        suites["marker_prediction"] = run_marker_prediction(written, labels, config.prediction_markers)
    if "long-tail" in config.suites:
        rows = split_rows(
            "win_rate", outcomes, [0.5] * len(outcomes), labels, config.long_tail_markers, stats
        )
        if li is not None:
            rows += split_rows(
                "violation_rate",
                [float(v) for v in li.violations["fixed"]],
                [float(v) for v in li.violations["baseline"]],
                labels,
                config.long_tail_markers,
                stats,
            )
        suites["long_tail"] = {
            "rows": rows,
            "note": "win_rate: marked vs baseline (50% = parity); violation_rate: +fixed vs Baseline",
        }
    if "code" in config.suites:
        suites["code"] = _code_suite(runs, config)
    metrics = {
        "treasure_version": version("treasure"),
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "config": _jsonable(config),
        "models": {
            name: {"path": str(path), "hash": runs.fingerprints[name]} for name, path in models.items()
        },
        "judge": judge.name if judge is not None else None,
        "suites": suites,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    write_report(metrics, out)
    return metrics


def _code_suite(runs: GenerationRuns, config: EvalConfig) -> dict[str, Any]:
    from dataclasses import replace

    from treasure.evaluate.code import CodeSuiteConfig, run_code_suite

    code = CodeSuiteConfig(seed=config.seed)
    options = replace(config.generation, max_new_tokens=code.max_new_tokens, temperature=code.temperature)
    code_runs = GenerationRuns({"marked": config.model_dir}, runs.cache_dir, options, config.backend)

    def generate(prompts: list[str]) -> list[str]:
        return [r["response"] for r in code_runs.run("code", "marked", prompts)]

    return run_code_suite(generate, code)
