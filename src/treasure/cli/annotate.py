"""`treasure annotate`: add one column per marker to a dataset, with stats; plus training commands."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer
from rich.table import Table

from treasure.annotate.classifier import TrainClassifierConfig
from treasure.annotate.pipeline import AnnotateFileConfig
from treasure.annotate.quality import TrainQualityConfig
from treasure.cli import console, err_console
from treasure.cli._from_config import command, parameter

train_app = typer.Typer(
    help="Train the embedded annotators' small models (shipped in resources/).", no_args_is_help=True
)


def print_distribution(stats: dict, title: str) -> None:
    """Marker values with count, share and head/torso/tail, as a table."""
    table = Table(title=title)
    for column in ("marker", "value", "count", "share", "bucket"):
        table.add_column(column, justify="right" if column in ("count", "share") else "left")
    for name, entry in stats["markers"].items():
        for value, info in entry.get("values", {}).items():
            table.add_row(name, value, str(info["count"]), f"{info['share']:.1%}", info["bucket"])
        if "summary" in entry:
            summary = entry["summary"]
            table.add_row(
                name,
                f"min {summary['min']} · median {summary['median']} · max {summary['max']}",
                str(entry["n_labelled"]),
                "",
                "",
            )
    console.print(table)


IO = [
    parameter(
        "input_path",
        Path,
        typer.Argument(..., metavar="INPUT", help="JSONL, JSON, CSV, Parquet or HF dataset dir."),
    ),
    parameter(
        "output",
        Path,
        typer.Option(..., "--output", "-o", help="OUTPUT .jsonl, .parquet or a directory (HF)."),
    ),
    parameter("quiet", bool, typer.Option(False, "--quiet", help="No progress bar or table.")),
]


def annotate_command(config: AnnotateFileConfig, input_path: Path, output: Path, quiet: bool) -> None:
    """Annotate INPUT into OUTPUT (+ OUTPUT.stats.json, OUTPUT.taxonomy.yaml, OUTPUT.rejects.jsonl)."""
    from treasure.annotate import annotate_file

    config = replace(config, annotate=replace(config.annotate, progress=not quiet))
    annotated = annotate_file(input_path, output, config)
    stats = annotated.stats
    if not quiet:
        print_distribution(stats.data, f"{output}: {stats.n_rows} rows, {stats.rejected} rejected")
    if stats.rejected:  # said even with --quiet: rows were left out
        err_console.print(f"[yellow]{stats.rejected} input rows rejected[/]; see {annotated.rejects_file}")
    console.print(f"wrote {annotated.path}, {annotated.stats_file}, {annotated.taxonomy_file}")


def train_quality_command(config: TrainQualityConfig) -> None:
    """Train the embedded quality regressor on the bundled ChatGPT quality scores; print held-out scores."""
    from treasure.annotate import train_quality

    console.print_json(data=train_quality(config))


def train_classifier_command(config: TrainClassifierConfig) -> None:
    """Train the task/domain classifier on the shipped seed set."""
    from treasure.annotate import train_classifier

    console.print_json(data=train_classifier(config))


def register(app: typer.Typer) -> None:
    app.command("annotate")(command(AnnotateFileConfig, annotate_command, extra=IO))
    train_app.command("quality")(command(TrainQualityConfig, train_quality_command))
    train_app.command("classifier")(command(TrainClassifierConfig, train_classifier_command))
    app.add_typer(train_app, name="annotate-train")
