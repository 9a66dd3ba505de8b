"""`treasure build`: annotated rows → a training set with marker templates (or a baseline set).

Its options are `BuildConfig`'s fields (declared there, with their help) plus the input, output and
`--overwrite`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from treasure.build import BuildConfig, build
from treasure.cli import console
from treasure.cli._from_config import command, parameter

IO = [
    parameter(
        "annotated",
        Path,
        typer.Argument(
            ..., metavar="ANNOTATED", help="Annotated data (with .taxonomy.yaml/.stats.json beside it)."
        ),
    ),
    parameter("output", Path, typer.Option(..., "--output", "-o", help="TRAIN_DIR to write.")),
    parameter(
        "overwrite",
        bool,
        typer.Option(
            False, "--overwrite", help="Replace an existing TRAIN_DIR (kept until the new one is complete)."
        ),
    ),
]


def build_command(config: BuildConfig, annotated: Path, output: Path, overwrite: bool) -> None:
    """Build TRAIN_DIR: chat messages with markers (dropout in the prompt, full template in the answer)."""
    train_dir = build(annotated, output, config, overwrite=overwrite)
    report = train_dir.build_report
    console.print(
        f"[green]built[/] {train_dir.path}: {report.n_train} train, {report.n_validation} validation rows"
        + ("" if config.baseline else f"; realised dropout {report.realised}")
    )
    overhead = report.template_overhead
    if overhead:
        table = Table(title="template overhead (template tokens / row tokens)")
        for column in ("tokenizer", "median", "p95", "template tokens", "row tokens"):
            table.add_column(column)
        for label, row in overhead.items():
            table.add_row(
                label,
                f"{row['median']:.1%}",
                f"{row['p95']:.1%}",
                f"{row['mean_template_tokens']:.1f}",
                f"{row['mean_row_tokens']:.1f}",
            )
        console.print(table)


def register(app: typer.Typer) -> None:
    app.command("build")(command(BuildConfig, build_command, extra=IO))
