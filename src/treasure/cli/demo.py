"""`treasure demo`: the end-to-end loop on the embedded default."""

from __future__ import annotations

from pathlib import Path

import typer

from treasure.cli import console
from treasure.demo import RECIPES, DemoConfig, run_demo


def demo(
    out_dir: Path | None = typer.Option(
        None, help="Where every stage writes (cached); default runs/demo, or runs/demo-RECIPE."
    ),
    seed: int = typer.Option(0, help="Seed for every random step."),
    recipe: str = typer.Option(
        "smollm2",
        help=f"Demo recipe: {', '.join(RECIPES)} (smollm2: LoRA on SmolLM2-135M-Instruct; tiny: scratch).",
    ),
    eval_prompts: int | None = typer.Option(
        None, help="Prompts per evaluation suite (default: the recipe's)."
    ),
) -> None:
    """Run the whole loop on the bundled data: a pretrained model fine-tuned on the CPU, or the tiny one."""
    run_demo(DemoConfig(out_dir=out_dir, seed=seed, recipe=recipe, eval_prompts=eval_prompts), console)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
