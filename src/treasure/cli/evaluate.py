"""`treasure evaluate`: the length-instruct table, win rate, adherence, marker prediction, long tail."""

from __future__ import annotations

from pathlib import Path

import typer

from treasure.cli import console
from treasure.evaluate.config import DEFAULT_SUITES, SUITES, EvalConfig, JudgeConfig
from treasure.generate import GenerationConfig


def evaluate_command(
    model_dir: Path = typer.Argument(
        ..., help="Marked model dir written by `treasure train`, or a registry name."
    ),
    baseline: Path | None = typer.Option(
        None, "--baseline", help="Baseline model dir (trained without markers)."
    ),
    suite: str = typer.Option(
        ",".join(DEFAULT_SUITES), "--suite", help=f"Comma list of: {', '.join(SUITES)}."
    ),
    prompts: Path | None = typer.Option(
        None, "--prompts", help="JSONL rows with `id`, `prompt` and optional reference `response`."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Report dir: metrics.json, report.html, generations/."),
    n_prompts: int = typer.Option(100, help="Prompts per suite (sampled with --seed)."),
    n_adherence_prompts: int = typer.Option(30, help="Prompts per (marker, value) in the adherence suite."),
    seed: int = typer.Option(0, help="Seed for prompt sampling, limits and decoding."),
    judge: str = typer.Option("reward-model", help="reward-model (offline) or openai (pairwise endpoint)."),
    reward_model: Path | None = typer.Option(None, help="HF reward model dir for the reward-model judge."),
    tie_margin: float = typer.Option(0.1, help="Reward-model judge: score gap below which it is a tie."),
    judge_endpoint: str | None = typer.Option(None, help="OpenAI-compatible base URL for --judge openai."),
    judge_model: str | None = typer.Option(None, help="Model name for --judge openai."),
    max_new_tokens: int = typer.Option(200, help="Completion length cap in model tokens."),
    temperature: float = typer.Option(0.0, help="Sampling temperature (0 = greedy)."),
    repetition_penalty: float = typer.Option(1.0, help="Repetition penalty (1.0 = off), all models."),
    batch_size: int = typer.Option(16, help="Prompts per generation batch."),
    backend: str = typer.Option("transformers", help="transformers or vllm."),
) -> None:
    """Evaluate a marked model against its baseline; resumes from REPORT_DIR/generations/ after a crash."""
    from treasure.evaluate import evaluate, paper_table

    config = EvalConfig(
        model_dir=model_dir,
        baseline_dir=baseline,
        suites=suite,  # type: ignore[arg-type]  (normalised in __post_init__)
        prompts=prompts,
        out_dir=out,
        n_prompts=n_prompts,
        n_adherence_prompts=n_adherence_prompts,
        seed=seed,
        judge=JudgeConfig(
            kind=judge,  # type: ignore[arg-type]
            reward_model=reward_model,
            tie_margin=tie_margin,
            endpoint=judge_endpoint,
            model=judge_model,
        ),
        generation=GenerationConfig(
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            repetition_penalty=repetition_penalty,
            seed=seed,
            batch_size=batch_size,
        ),
        backend=backend,
    )
    metrics = evaluate(config)
    if "length_instruct" in metrics["suites"]:
        console.print(paper_table(metrics))
    console.print(f"report: [bold]{(out / 'report.html').resolve()}[/]  metrics: {out / 'metrics.json'}")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_command)
