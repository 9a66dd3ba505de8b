"""The demo's stages, run in order, each cached under `out_dir/<stage>/` with a `.done` record (seconds,
summary, the recipe hash), and the showcase of answers per mode printed at the end."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from treasure import io, models
from treasure.artifacts import REPORT_HTML
from treasure.demo.data import banded_thresholds, data_summary
from treasure.demo.recipes import DemoConfig
from treasure.demo_results import CACHED, TIMINGS
from treasure.taxonomy import Taxonomy, with_thresholds

DONE = ".done"
SHOWCASE_PROMPTS = (
    "Give three tips for staying healthy.",
    "What is the capital of France?",
    "Write a short poem about the sea.",
)


def run_stage(
    name: str, out: Path, work: Callable[[], dict[str, Any] | None], config: DemoConfig, console: Console
) -> dict[str, Any]:
    """Run `work` unless `out/.done` exists with this config's key; record seconds and summary in `.done`.

    A `.done` written under another recipe or seed is stale: the stage dir is cleared and the stage redone.
    """
    done = out / DONE
    key = config.key(name)
    if done.is_file():
        record = json.loads(done.read_text(encoding="utf-8"))
        if record.get("key") == key:
            console.print(f"[dim]✓ {name}: cached ({record['seconds']:.0f} s when it ran) → {out}[/]")
            config.timings[name] = record["seconds"]
            config.cached.append(name)
            return record
        console.print(f"[yellow]{name}: {out} was made with another recipe; redoing it[/]")
        shutil.rmtree(out)
    console.rule(f"[bold]{name}")
    began = time.perf_counter()
    summary = work() or {}
    seconds = time.perf_counter() - began
    record = {"seconds": round(seconds, 1), "key": key, "summary": summary}
    out.mkdir(parents=True, exist_ok=True)
    io.atomic_write_text(done, json.dumps(record, indent=2, default=str) + "\n")
    config.timings[name] = seconds
    console.print(f"[green]✓ {name}[/] in {seconds:.0f} s → {out}")
    return record


def annotate_stage(data_file: Path, out: Path, console: Console) -> dict[str, Any]:
    """Annotate with the embedded annotators and print the distribution.

    `length_bucket` thresholds are the tertiles of the English banded rows' `length_tokens`, so they fall
    in the gaps between the response bands. Tertiles of all rows would not: the one-sentence cross-lingual
    answers (median 24 words) filled the `medium` bucket and pulled `long` down to 40 words (measured,
    docs/smollm2-demo-experiments.md no. 7).
    """
    from treasure.annotate import AnnotateConfig, AnnotateFileConfig, annotate_file

    cuts = banded_thresholds(data_file)
    console.print(f"length_bucket thresholds (tertiles of the English banded rows): {cuts} tokens")
    taxonomy = with_thresholds(Taxonomy.default(), "length_bucket", cuts)
    annotate = AnnotateConfig(taxonomy=taxonomy, length_buckets="taxonomy", num_proc=2, progress=True)
    config = AnnotateFileConfig(annotate=annotate, overwrite=True)  # a stage is redone whole
    stats = annotate_file(data_file, out / "rows.jsonl", config).stats
    console.print(marker_table(stats.data))
    return {"rows": stats.n_rows, "thresholds": stats.thresholds}


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

    spec = config.spec
    report = build(
        annotated,
        out,
        BuildConfig(
            dataset_dropout=spec.dataset_dropout,
            marker_dropout=spec.marker_dropout,
            markers=spec.markers,
            baseline=baseline,
            seed=config.seed,
            tokenizer=None if baseline else models.resolve(spec.model),  # "tiny" stays "tiny"
        ),
        overwrite=True,  # a stage is redone whole
    ).build_report
    return {k: report.data[k] for k in ("n_train", "realised", "template_overhead") if k in report.data}


def train_stage(train_dir: Path, out: Path, recipe: str, seed: int) -> dict[str, Any]:
    """Train one model with the recipe (resuming an interrupted run from its last checkpoint)."""
    from treasure.train import TrainConfig, last_checkpoint, train

    resume = last_checkpoint(out) is not None
    config = TrainConfig.from_file(
        recipe, train_dir=train_dir, output_dir=out, seed=seed, resume=resume, overwrite=True
    )
    report = train(config).train_report
    assert report is not None  # train always writes it
    return {
        "losses": report.losses,
        "rows": report.n_train_rows,
        "steps": report.steps,
        "tokens_per_s": report.train_tokens_per_s,
    }


def eval_config(config: DemoConfig) -> Any:
    """The `EvalConfig` of the demo's evaluate stage."""
    from treasure.backends import GenerationConfig
    from treasure.evaluate import EvalConfig

    spec = config.spec
    adherence: dict[str, tuple[str, ...]] = {"length_bucket": ("concise", "medium", "long")}
    if spec.adherence_languages:
        adherence["language"] = spec.adherence_languages
    return EvalConfig(
        model_dir=config.out_dir / "model-marked",
        baseline_dir=config.out_dir / "model-baseline",
        suites=config.suites,
        out_dir=config.out_dir / "report",
        n_prompts=config.n_prompts or spec.eval_prompts,
        n_adherence_prompts=spec.n_adherence_prompts,
        adherence_markers=adherence,
        adherence_modes=spec.adherence_modes,
        guidance_scales=spec.guidance_scales,
        request_languages=spec.request_languages,
        seed=config.seed,
        judge="reward-model",  # type: ignore[arg-type]
        backend="auto",
        generation=GenerationConfig(
            max_new_tokens=spec.max_new_tokens,
            temperature=0.0,
            repetition_penalty=spec.repetition_penalty,
            seed=config.seed,
            batch_size=spec.batch_size,
        ),
    )


def evaluate_stage(config: DemoConfig, console: Console) -> dict[str, Any]:
    """Evaluate the marked model against the baseline; print the paper-style and adherence tables.

    Generation runs on vLLM where it is installed (measured ×3 the transformers backend on SmolLM2 here),
    on transformers for the guided rows and where vLLM is absent (`backend="auto"`)."""
    from treasure.backends import vllm_installed
    from treasure.evaluate import evaluate, paper_table

    console.print(
        "generation engine: vLLM for every run but the guided ones (transformers: vLLM has no guidance)"
        if vllm_installed()
        else "generation engine: transformers (vLLM is not installed here)"
    )
    metrics = evaluate(eval_config(config))
    console.print(paper_table(metrics))
    console.print(adherence_table(metrics))
    return {"report": str(config.out_dir / "report" / REPORT_HTML)}


def adherence_table(metrics: dict[str, Any]) -> Table:
    """Per (marker, value): how often the answer has the value asked for, per mode."""
    suite = metrics.get("suites", {}).get("adherence") or {}
    modes = suite.get("modes", [])
    table = Table(title="Marker adherence (answer re-annotated; conditioning = no marker given, base rate)")
    table.add_column("marker")
    table.add_column("value")
    for mode in modes:
        table.add_column(mode, justify="right")
    rates: dict[tuple[str, str], dict[str, str]] = {}
    for cell in suite.get("cells", []):
        readable = f" ({cell['readable_rate']:.0%} readable)" if "readable_rate" in cell else ""
        rates.setdefault((cell["marker"], cell["value"]), {})[cell["mode"]] = (
            f"{cell['rate']:.0%}{readable} of {cell['n']}"
        )
    for (marker, value), by_mode in rates.items():
        table.add_row(marker, value, *(by_mode.get(mode, "") for mode in modes))
    return table


def showcase(config: DemoConfig, console: Console) -> None:
    """Example prompts: the marked model's answer per mode, beside the baseline's."""
    from treasure.backends import GenerationConfig
    from treasure.generate import Generator

    spec = config.spec
    marked = Generator.from_model_dir(config.out_dir / "model-marked")
    options = GenerationConfig(
        max_new_tokens=spec.max_new_tokens,
        temperature=0.0,
        repetition_penalty=spec.repetition_penalty,
        seed=config.seed,
    )
    prompts = list(SHOWCASE_PROMPTS)
    limited = [f"{p} Answer in 20 words or less." for p in prompts]
    runs = {
        "conditioning": marked.generate(prompts, "conditioning", config=options),
        "controlling length_bucket=concise": marked.generate(
            prompts, "controlling", {"length_bucket": "concise"}, config=options
        ),
        "controlling length_bucket=long": marked.generate(
            prompts, "controlling", {"length_bucket": "long"}, config=options
        ),
        "fixed (“Answer in 20 words or less.” → length_tokens=20)": marked.generate(
            limited, "fixed", config=options
        ),
        "fixed +budget (cut at the last sentence end within 20 words)": marked.generate(
            limited, "fixed", config=replace(options, length_budget=True)
        ),
    }
    for scale in spec.guidance_scales:
        runs[f"controlling length_bucket=concise, guidance G={scale:g}"] = marked.generate(
            prompts, "controlling", {"length_bucket": "concise"}, config=replace(options, guidance=scale)
        )
    for language in spec.showcase_languages:
        runs[f"controlling language={language}"] = marked.generate(
            prompts, "controlling", {"language": language}, config=options
        )
    del marked
    baseline = Generator.from_model_dir(config.out_dir / "model-baseline")
    runs["baseline model (no markers)"] = baseline.generate(prompts, config=options)
    for index, prompt in enumerate(prompts):
        table = Table(title=f"prompt: {prompt}", show_lines=True)
        table.add_column("mode", style="bold")
        table.add_column("markers (model's or given)")
        table.add_column("answer")
        for mode, generations in runs.items():
            g = generations[index]
            markers = ", ".join(f"{k}={v}" for k, v in sorted(g.markers.items()))
            table.add_row(mode, markers, Text(g.response.strip()[:500]))
        console.print(table)


def model_stage(config: DemoConfig, console: Console) -> None:
    """Make sure the recipe's base model is prepared (converted once into the model cache)."""
    if config.spec.model == models.TINY:
        return
    began = time.perf_counter()
    path = models.prepare(config.spec.model, log=console.print)
    config.timings["prepare model"] = time.perf_counter() - began
    console.print(f"[green]✓ model[/] {config.spec.model}: {path}")


def run_demo(config: DemoConfig, console: Console) -> None:
    """Run every demo stage in order, reusing finished ones; print the stage times."""
    out, spec = config.out_dir, config.spec
    began = time.perf_counter()
    model_stage(config, console)
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
                out / f"train-{kind}", out / f"model-{kind}", spec.train_recipe, config.seed
            ),
            config,
            console,
        )
    record = run_stage("evaluate", out / "report", lambda: evaluate_stage(config, console), config, console)
    showcase_began = time.perf_counter()
    showcase(config, console)
    config.timings["show answers"] = time.perf_counter() - showcase_began
    timing = Table(title=f"demo stages (this run: {time.perf_counter() - began:.0f} s)")
    timing.add_column("stage")
    timing.add_column("seconds", justify="right")
    for name, seconds in config.timings.items():
        timing.add_row(name, f"{seconds:.0f}" + (" (cached: when it ran)" if name in config.cached else ""))
    console.print(timing)
    io.atomic_write_text(out / TIMINGS, json.dumps(config.timings, indent=2) + "\n")
    io.atomic_write_text(out / CACHED, json.dumps(config.cached) + "\n")
    console.print(f"report: [bold]{Path(record['summary']['report']).resolve()}[/]")
