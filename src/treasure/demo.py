"""`make demo`: the whole loop on the embedded default (bundled real data, a tiny model on the CPU).

annotate → build (marked + baseline) → train both tiny models → evaluate → show answers per mode.
Each stage writes under `runs/demo/<stage>/` and drops a `.done` file (its seconds and summary) when it
finishes, so a second run reuses finished stages and an interrupted run resumes at the first unfinished one.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from treasure import io
from treasure.bundled import load_bundled

DONE = ".done"
SHOWCASE_PROMPTS = (
    "Give three tips for staying healthy.",
    "What is the capital of France?",
    "Write a short poem about the sea.",
)


@dataclass
class DemoConfig:
    """Where the demo writes, its seed, and how much evaluation it runs."""

    out_dir: Path = Path("runs/demo")
    seed: int = 0
    train_recipe: str = "tiny_demo"
    eval_prompts: int = 100
    max_prompt_words: int = 60
    # The paper drops markers at 0.5 / 0.5; a tiny model with a few minutes of CPU training learns to follow
    # prompt markers only when it sees them often, so the demo shows them more often and uses fewer markers.
    dataset_dropout: float = 0.1
    marker_dropout: float = 0.2
    markers: tuple[str, ...] = (
        "code_type",
        "domain",
        "format",
        "language",
        "length_bucket",
        "length_tokens",
        "quality_bucket",
        "source",
        "task",
    )
    max_response_words: int = 150
    suites: tuple[str, ...] = ("length-instruct", "win-rate", "adherence", "marker-prediction", "long-tail")
    timings: dict[str, float] = field(default_factory=dict)


def run_stage(
    name: str, out: Path, work: Callable[[], dict[str, Any] | None], config: DemoConfig, console: Console
) -> dict[str, Any]:
    """Run `work` unless `out/.done` exists; record seconds and the summary it returns in `.done`."""
    done = out / DONE
    if done.is_file():
        record = json.loads(done.read_text(encoding="utf-8"))
        console.print(f"[dim]✓ {name}: cached ({record['seconds']:.0f} s when it ran) → {out}[/]")
        config.timings[name] = 0.0
        return record
    console.rule(f"[bold]{name}")
    began = time.perf_counter()
    summary = work() or {}
    seconds = time.perf_counter() - began
    record = {"seconds": round(seconds, 1), "summary": summary}
    out.mkdir(parents=True, exist_ok=True)
    io.atomic_write_text(done, json.dumps(record, indent=2, default=str) + "\n")
    config.timings[name] = seconds
    console.print(f"[green]✓ {name}[/] in {seconds:.0f} s → {out}")
    return record


def data_summary(console: Console, out: Path, config: DemoConfig) -> dict[str, Any]:
    """Write the bundled training rows to one JSONL and print rows per file/source and field coverage.

    Only rows with a prompt of at most `max_prompt_words` and a response of at most `max_response_words`
    words are kept: the tiny CPU model then sees whole examples (answer and end token) within its
    256-token window and its time budget.
    """
    ds, rejected = load_bundled()
    total = len(ds)
    ds = ds.filter(
        lambda row: (
            len(row["prompt"].split()) <= config.max_prompt_words
            and len(row["response"].split()) <= config.max_response_words
        )
    )
    console.print(
        f"kept {len(ds)} of {total} bundled rows (prompt ≤ {config.max_prompt_words} words, "
        f"response ≤ {config.max_response_words} words)"
    )
    io.save(ds.remove_columns(["file"]), out / "bundled.jsonl")
    by_file = Counter(zip(ds["file"], ds["source"], strict=True))
    table = Table(title=f"bundled training data: {len(ds)} rows")
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


def annotate_stage(data_file: Path, out: Path, console: Console) -> dict[str, Any]:
    """Annotate with the embedded annotators (quantile length buckets) and print the distribution."""
    from treasure.annotate import AnnotateConfig, AnnotateFileConfig, annotate_file

    config = AnnotateFileConfig(annotate=AnnotateConfig(length_buckets="quantile", num_proc=2, progress=True))
    stats = annotate_file(data_file, out / "rows.jsonl", config)
    console.print(marker_table(stats))
    return {"rows": stats.get("n_rows"), "thresholds": stats.get("thresholds")}


def marker_table(stats: dict[str, Any], top: int = 6) -> Table:
    """Marker value distribution with head/torso/tail, the most frequent values of each marker."""
    table = Table(title=f"marker distribution ({stats.get('n_rows')} rows; head ≥ 5%, tail < 1%)")
    for column in ("marker", "value", "rows", "share", "bucket"):
        table.add_column(column, justify="right" if column in ("rows", "share") else "left")
    for name, info in stats.get("markers", {}).items():
        values = info.get("values")
        if not values:
            summary = info.get("summary") or {}
            text = ", ".join(f"{k} {v:g}" for k, v in summary.items() if isinstance(v, int | float))
            table.add_row(name, text, str(info.get("n_labelled", "")), "", "")
            continue
        ranked = sorted(values.items(), key=lambda item: -item[1]["count"])
        for index, (value, cell) in enumerate(ranked[:top]):
            colour = {"head": "green", "torso": "yellow", "tail": "red"}.get(cell["bucket"], "white")
            table.add_row(
                name if index == 0 else "",
                value,
                str(cell["count"]),
                f"{cell['share']:.1%}",
                f"[{colour}]{cell['bucket']}[/]",
            )
        if len(ranked) > top:
            table.add_row("", f"… {len(ranked) - top} more", "", "", "")
    return table


def build_stage(annotated: Path, out: Path, baseline: bool, config: DemoConfig) -> dict[str, Any]:
    """Build the marked or baseline training set."""
    from treasure.build import BuildConfig, build

    build(
        annotated,
        out,
        BuildConfig(
            dataset_dropout=config.dataset_dropout,
            marker_dropout=config.marker_dropout,
            markers=config.markers,
            baseline=baseline,
            seed=config.seed,
            tokenizer=None if baseline else "tiny",
        ),
    )
    report = json.loads((out / "build.json").read_text(encoding="utf-8"))
    return {k: report.get(k) for k in ("rows", "realised", "template_overhead") if k in report}


def train_stage(train_dir: Path, out: Path, recipe: str, seed: int) -> dict[str, Any]:
    """Train one tiny model from scratch with the shipped demo recipe (resuming an interrupted run)."""
    from transformers.trainer_utils import get_last_checkpoint

    from treasure.train import TrainConfig, train

    checkpoints = out / "checkpoints"
    resume = checkpoints.is_dir() and get_last_checkpoint(str(checkpoints)) is not None
    train(TrainConfig.from_file(recipe, train_dir=train_dir, output_dir=out, seed=seed, resume=resume))
    meta = json.loads((out / "train.json").read_text(encoding="utf-8"))
    return {"losses": meta.get("losses")}


def evaluate_stage(config: DemoConfig, console: Console) -> dict[str, Any]:
    """Evaluate the marked model against the baseline and print the paper-style table."""
    from treasure.evaluate import EvalConfig, evaluate, paper_table

    out = config.out_dir / "report"
    metrics = evaluate(
        EvalConfig(
            model_dir=config.out_dir / "model-marked",
            baseline_dir=config.out_dir / "model-baseline",
            suites=config.suites,
            out_dir=out,
            n_prompts=config.eval_prompts,
            seed=config.seed,
            judge="reward-model",
        )
    )
    console.print(paper_table(metrics))
    return {"report": str(out / "report.html")}


def showcase(model_dir: Path, console: Console, seed: int) -> None:
    """Three example prompts: the answer under each mode and under concise/long length markers."""
    from treasure.backends import GenerationConfig
    from treasure.generate import Generator

    generator = Generator.from_model_dir(model_dir)
    options = GenerationConfig(max_new_tokens=160, temperature=0.0, seed=seed)
    runs = {
        "conditioning": generator.generate(list(SHOWCASE_PROMPTS), "conditioning", config=options),
        "controlling concise": generator.generate(
            list(SHOWCASE_PROMPTS), "controlling", {"length_bucket": "concise"}, config=options
        ),
        "controlling long": generator.generate(
            list(SHOWCASE_PROMPTS), "controlling", {"length_bucket": "long"}, config=options
        ),
        "fixed (“in 10 words or less”)": generator.generate(
            [f"{p} Answer in 10 words or less." for p in SHOWCASE_PROMPTS], "fixed", config=options
        ),
    }
    for index, prompt in enumerate(SHOWCASE_PROMPTS):
        table = Table(title=f"prompt: {prompt}", show_lines=True)
        table.add_column("mode", style="bold")
        table.add_column("markers (model's or given)")
        table.add_column("answer")
        for mode, generations in runs.items():
            g = generations[index]
            markers = ", ".join(f"{k}={v}" for k, v in sorted(g.markers.items()))
            table.add_row(mode, markers, g.response.strip()[:400])
        console.print(table)


def run_demo(config: DemoConfig, console: Console) -> None:
    """Run every demo stage in order, reusing finished ones."""
    out = config.out_dir
    began = time.perf_counter()
    run_stage("data", out / "data", lambda: data_summary(console, out / "data", config), config, console)
    data_file = out / "data" / "bundled.jsonl"
    run_stage(
        "annotate",
        out / "annotated",
        lambda: annotate_stage(data_file, out / "annotated", console),
        config,
        console,
    )
    annotated = out / "annotated" / "rows.jsonl"
    for kind in ("marked", "baseline"):
        run_stage(
            f"build {kind}",
            out / f"train-{kind}",
            lambda kind=kind: build_stage(annotated, out / f"train-{kind}", kind == "baseline", config),
            config,
            console,
        )
    for kind in ("marked", "baseline"):
        run_stage(
            f"train {kind}",
            out / f"model-{kind}",
            lambda kind=kind: train_stage(
                out / f"train-{kind}", out / f"model-{kind}", config.train_recipe, config.seed
            ),
            config,
            console,
        )
    record = run_stage("evaluate", out / "report", lambda: evaluate_stage(config, console), config, console)
    showcase(out / "model-marked", console, config.seed)
    timing = Table(title=f"demo stages (this run: {time.perf_counter() - began:.0f} s)")
    timing.add_column("stage")
    timing.add_column("seconds this run", justify="right")
    for name, seconds in config.timings.items():
        timing.add_row(name, f"{seconds:.0f}" if seconds else "cached")
    console.print(timing)
    console.print(f"report: [bold]{Path(record['summary']['report']).resolve()}[/]")
