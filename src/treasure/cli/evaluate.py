"""`treasure evaluate`: the length-instruct table, win rate, adherence, language requests, marker prediction,
long tail."""

from __future__ import annotations

import typer

from treasure.cli import console
from treasure.cli._from_config import command
from treasure.evaluate.config import EvalConfig


def evaluate_command(config: EvalConfig) -> None:
    """Evaluate a marked model against its baseline; resumes from REPORT_DIR/generations/ after a crash."""
    from treasure.evaluate import evaluate, paper_table

    metrics = evaluate(config)
    if {"length_instruct", "language_request"} & metrics["suites"].keys():
        console.print(paper_table(metrics))
    out = config.out_dir
    console.print(f"report: [bold]{(out / 'report.html').resolve()}[/]  metrics: {out / 'metrics.json'}")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(command(EvalConfig, evaluate_command))
