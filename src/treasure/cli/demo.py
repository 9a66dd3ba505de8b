"""`treasure demo`: the end-to-end loop on the embedded default."""

from __future__ import annotations

from pathlib import Path

import typer

from treasure.cli import console
from treasure.demo import DemoConfig, run_demo


def demo(
    out_dir: Path = typer.Option(Path("runs/demo"), help="Where every stage writes (cached)."),
    seed: int = typer.Option(0, help="Seed for every random step."),
    recipe: str = typer.Option("tiny_demo", help="Train recipe: a shipped preset name or a YAML path."),
    eval_prompts: int = typer.Option(100, help="Prompts per evaluation suite."),
) -> None:
    """Run the whole loop on the bundled data with a tiny model trained on the CPU."""
    run_demo(DemoConfig(out_dir=out_dir, seed=seed, train_recipe=recipe, eval_prompts=eval_prompts), console)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
