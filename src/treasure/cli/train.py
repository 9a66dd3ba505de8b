"""`treasure train`: SFT (TRL) on a built TRAIN_DIR → a self-contained MODEL_DIR.

Its options are `TrainConfig`'s knobs (declared there, with their help), plus TRAIN_DIR, `-o MODEL_DIR`,
`--config RECIPE` and `--sft KEY=VALUE`. The recipe supplies every field the command line does not give."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
import yaml

from treasure.cli import console
from treasure.cli._from_config import command, name_values, parameter
from treasure.train import (
    SIZE_RECIPES,
    TRAIN_RECIPES,
    TrainConfig,
    check_fields,
    is_main_process,
    recipe_for_size,
    train,
)

DEFAULT_RECIPES = {"tiny": "tiny_demo", "smollm2-135m": "smollm2_demo"}  # by --model, without --config

IO = [
    parameter(
        "train_dir",
        Path,
        typer.Argument(..., metavar="TRAIN_DIR", help="TRAIN_DIR written by `treasure build`."),
    ),
    parameter("output", Path, typer.Option(..., "--output", "-o", help="MODEL_DIR to write.")),
    parameter(
        "config_file",
        str | None,
        typer.Option(
            None,
            "--config",
            "-c",
            help=f"Recipe YAML of TrainConfig/SFTConfig fields, or a recipe ({', '.join(TRAIN_RECIPES)}); "
            f"default {DEFAULT_RECIPES['tiny']} for --model tiny, {DEFAULT_RECIPES['smollm2-135m']} for "
            f"smollm2-135m, {' or '.join(SIZE_RECIPES)} by size (under or from 1B parameters) for a local "
            "model dir. Options given override it.",
        ),
    ),
    parameter(
        "sft",
        list[str],
        typer.Option(
            [],
            "--sft",
            help="Any other SFTConfig field as KEY=VALUE (value read as YAML), repeatable; "
            "overrides the recipe.",
        ),
    ),
]


def sft_fields(pairs: list[str]) -> dict[str, Any]:
    """`--sft KEY=VALUE` pairs as field values (YAML values), each key a TrainConfig/SFTConfig field."""
    out = {key: yaml.safe_load(value) for key, value in name_values(pairs).items()}
    check_fields(out, "--sft")
    return out


def _count(parameters: int) -> str:
    return f"{parameters / 1e9:.1f}B" if parameters >= 1e9 else f"{parameters / 1e6:.1f}M"


def default_recipe(model: str) -> str | None:
    """The recipe of `--model` without `--config`: the registry model's own, else one for a local dir's size
    (said on the console), else none."""
    if model in DEFAULT_RECIPES:
        return DEFAULT_RECIPES[model]
    if not (Path(model) / "config.json").is_file():
        return None
    name, parameters = recipe_for_size(model)
    console.print(
        f"recipe: {name} (--model {model}: {_count(parameters)} parameters; --config RECIPE to choose)",
        highlight=False,
        soft_wrap=True,
    )
    return name


def recipe_values(given: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """The fields the command line does not give: the recipe's, then `--sft`'s, then TRAIN_DIR and -o."""
    name = extra["config_file"] or default_recipe(given.get("model", "tiny"))
    values = TrainConfig.recipe(name) if name else {}
    values.update(sft_fields(extra["sft"]))
    values.update(train_dir=extra["train_dir"], output_dir=extra["output"])
    return values


def train_command(config: TrainConfig, **_: Any) -> None:
    """Fine-tune with TRL's SFTTrainer: loss on the answer (template included), none on the prompt.

    The defaults shown are TrainConfig's; the recipe (--config, by default tiny_demo for the tiny model)
    replaces them, and the options given replace the recipe's values."""
    model_dir = train(config)
    if not is_main_process():  # one summary per run, not one per `accelerate launch` process
        return
    report = model_dir.train_report
    losses = report.losses
    console.print(
        f"[green]trained[/] {model_dir.path}: {report.steps} steps, {report.train_tokens_per_s} tokens/s, "
        f"train loss {losses.get('final_train')}, validation loss {losses.get('initial_eval')} → "
        f"{losses.get('final_eval')}"
    )


def register(app: typer.Typer) -> None:
    app.command("train")(command(TrainConfig, train_command, extra=IO, recipe=recipe_values))
