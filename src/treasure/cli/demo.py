"""`treasure demo`: the end-to-end loop on the embedded default. Its options are `DemoConfig`'s fields."""

from __future__ import annotations

import typer

from treasure.cli import console
from treasure.cli._from_config import command
from treasure.demo import DemoConfig, run_demo


def demo(config: DemoConfig) -> None:
    """Run the whole loop on the bundled data: a pretrained model fine-tuned on the CPU, or the tiny one."""
    run_demo(config, console)


def register(app: typer.Typer) -> None:
    app.command("demo")(command(DemoConfig, demo))
