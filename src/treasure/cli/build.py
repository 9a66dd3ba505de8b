"""`treasure build`: annotated rows → a training set with marker templates (or a baseline set)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from treasure.build import BuildConfig, build
from treasure.cli import console
from treasure.io import read_json


def build_command(
    annotated: Path = typer.Argument(..., help="Annotated data (with .taxonomy.yaml/.stats.json beside it)."),
    output: Path = typer.Option(..., "--output", "-o", help="TRAIN_DIR to write."),
    dataset_dropout: float = typer.Option(0.5, help="Share of rows whose prompt gets no markers at all."),
    marker_dropout: float = typer.Option(0.5, help="Share of each remaining marker left out of the prompt."),
    baseline: bool = typer.Option(False, "--baseline", help="No markers anywhere (the ablation)."),
    markers: str | None = typer.Option(None, help="Comma-separated marker names to use (default: all)."),
    seed: int = typer.Option(0, help="Seed of the dropout and the split."),
    val_fraction: float = typer.Option(0.02, help="Share of rows held out for validation."),
    tokenizer: str = typer.Option(
        "tiny", help="Tokenizer for the overhead report: tiny, a local model dir, or none."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing TRAIN_DIR (kept until the new one is complete)."
    ),
) -> None:
    """Build TRAIN_DIR: chat messages with markers (dropout in the prompt, full template in the answer)."""
    names = tuple(n.strip() for n in markers.split(",") if n.strip()) if markers else None
    config = BuildConfig(
        dataset_dropout=dataset_dropout,
        marker_dropout=marker_dropout,
        baseline=baseline,
        markers=names,
        seed=seed,
        val_fraction=val_fraction,
        tokenizer=None if tokenizer == "none" else tokenizer,
    )
    out = build(annotated, output, config, overwrite=overwrite)
    report = read_json(out / "build.json")
    console.print(
        f"[green]built[/] {out}: {report['n_train']} train, {report['n_validation']} validation rows"
        + ("" if baseline else f"; realised dropout {report['realised']}")
    )
    overhead = report.get("template_overhead") or {}
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
    app.command("build")(build_command)
