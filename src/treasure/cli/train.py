"""`treasure train`: SFT (TRL) on a built TRAIN_DIR → a self-contained MODEL_DIR."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
import yaml

from treasure.cli import console
from treasure.train import PRESETS, TrainConfig, train


def _sft_args(pairs: list[str]) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"--sft expects KEY=VALUE (an SFTConfig field), got {pair!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def train_command(
    train_dir: Path = typer.Argument(..., help="TRAIN_DIR written by `treasure build`."),
    output: Path = typer.Option(..., "--output", "-o", help="MODEL_DIR to write."),
    model: str | None = typer.Option(
        None,
        help="Registry name (tiny, smollm2-135m; `treasure models list`) or a local HF causal LM dir "
        "(default: the recipe's, else tiny).",
    ),
    config: str | None = typer.Option(
        None,
        "--config",
        "-c",
        help=f"Recipe YAML or preset ({', '.join(PRESETS)}); default tiny_demo for tiny.",
    ),
    lora: bool = typer.Option(False, "--lora", help="Train LoRA adapters (PEFT) instead of all weights."),
    merge: bool = typer.Option(False, "--merge", help="With --lora: save merged weights, not the adapter."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue an interrupted run into MODEL_DIR from its last checkpoint."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing MODEL_DIR (kept until the new one is complete)."
    ),
    max_steps: int | None = typer.Option(None, help="Optimizer steps (-1: use --epochs)."),
    epochs: float | None = typer.Option(None, help="Epochs when max_steps is -1."),
    batch_size: int | None = typer.Option(None, help="Per-device batch size."),
    learning_rate: float | None = typer.Option(None, "--lr", help="Peak learning rate."),
    max_length: int | None = typer.Option(None, help="Tokens per row (longer rows are truncated)."),
    save_steps: int | None = typer.Option(None, help="Checkpoint every N steps (0: none)."),
    eval_steps: int | None = typer.Option(None, help="Evaluate every N steps (0: only at the end)."),
    seed: int | None = typer.Option(None, help="Seed of init, data order and dropout layers."),
    report_to: str | None = typer.Option(None, help="none, tensorboard, wandb, mlflow (passed to TRL)."),
    sft: list[str] = typer.Option([], "--sft", help="Any other SFTConfig field as KEY=VALUE, repeatable."),
) -> None:
    """Fine-tune with TRL's SFTTrainer: loss on the answer (template included), none on the prompt."""
    overrides: dict[str, Any] = {
        "train_dir": train_dir,
        "output_dir": output,
        "model": model,
        "resume": resume or None,
        "overwrite": overwrite or None,
        "max_steps": max_steps,
        "num_train_epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "max_length": max_length,
        "save_steps": save_steps,
        "eval_steps": eval_steps,
        "seed": seed,
        "report_to": report_to,
        "lora": lora or None,
        "merge": merge or None,
    }
    recipe = config or {"tiny": "tiny_demo", "smollm2-135m": "smollm2_demo"}.get(model or "tiny")
    cfg = (
        TrainConfig.from_file(recipe, **overrides)
        if recipe
        else TrainConfig(**{k: v for k, v in overrides.items() if v is not None})
    )
    cfg.sft_args.update(_sft_args(sft))
    model_dir = train(cfg)
    report = model_dir.train_report
    losses = report.losses
    console.print(
        f"[green]trained[/] {model_dir.path}: {report.steps} steps, {report.train_tokens_per_s} tokens/s, "
        f"train loss {losses.get('final_train')}, validation loss {losses.get('initial_eval')} → "
        f"{losses.get('final_eval')}"
    )


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
