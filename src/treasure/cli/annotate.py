"""`treasure annotate`: add one column per marker to a dataset, with stats; plus training commands."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from treasure.cli import console, err_console
from treasure.cli.basics import parse_marker_args
from treasure.errors import TreasureError
from treasure.taxonomy import Taxonomy

train_app = typer.Typer(
    help="Train the embedded annotators' small models (shipped in resources/).", no_args_is_help=True
)


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


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


def annotate_command(
    input_path: Path = typer.Argument(
        ..., metavar="INPUT", help="JSONL, JSON, CSV, Parquet or HF dataset dir."
    ),
    output: Path = typer.Option(..., "--output", "-o", help="OUTPUT .jsonl, .parquet or a directory (HF)."),
    preset: str | None = typer.Option(
        None, help="Input preset (alpaca, fastchat, messages, ...); default: detect."
    ),
    field: list[str] = typer.Option([], "--field", help="NAME=INPUT_FIELD mapping, repeatable."),
    taxonomy: Path | None = typer.Option(
        None, "--taxonomy", "-t", help="Taxonomy YAML (default: the paper's 13)."
    ),
    annotators: str = typer.Option(
        ",".join(("source", "language", "rules", "classifier", "quality")),
        help="Comma list of: source, language, rules, classifier, quality, llm.",
    ),
    num_proc: int = typer.Option(1, "--num-proc", help="Processes (local engine) or workers (ray)."),
    engine: str = typer.Option("local", help="local or ray."),
    batch_size: int = typer.Option(256, "--batch-size"),
    shard_size: int = typer.Option(
        1000, "--shard-size", help="Rows per shard written to OUTPUT.work/ (resume unit)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Skip shards a killed run already finished."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing OUTPUT (kept until the new one is written)."
    ),
    keep_work: bool = typer.Option(
        False, "--keep-work", help="Keep OUTPUT.work/ (finished shards) after the run."
    ),
    length_buckets: str = typer.Option(
        "taxonomy", "--length-buckets", help="taxonomy thresholds, or quantile (tertiles of the data)."
    ),
    source: str | None = typer.Option(
        None, "--source", help="source marker for every row: Human, Translation, Synthetic, Others."
    ),
    source_field: str | None = typer.Option(None, "--source-field", help="Take source from this column."),
    source_map: list[str] = typer.Option(
        [], "--source-map", help="RAW=VALUE for --source-field, repeatable."
    ),
    llm_endpoint: str | None = typer.Option(
        None, "--llm-endpoint", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1"
    ),
    llm_model: str | None = typer.Option(None, "--llm-model"),
    llm_concurrency: int = typer.Option(4, "--llm-concurrency"),
    llm_cache: Path | None = typer.Option(None, "--llm-cache", help="Disk cache dir for LLM replies."),
    llm_api_key_env: str = typer.Option(
        "OPENAI_API_KEY", "--llm-api-key-env", help="Environment variable holding the endpoint's API key."
    ),
    reward_model: Path | None = typer.Option(
        None, "--reward-model", help="HF sequence-classification dir for quality."
    ),
    threshold: float = typer.Option(
        0.35, "--classifier-threshold", help="Below this confidence: Unspecified / null."
    ),
    max_reject_rate: float = typer.Option(
        0.01, help="Fail (keeping any old OUTPUT) when more than this share of input rows is rejected."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar or table."),
) -> None:
    """Annotate INPUT into OUTPUT (+ OUTPUT.stats.json, OUTPUT.taxonomy.yaml, OUTPUT.rejects.jsonl)."""
    from treasure.annotate import (
        AnnotateConfig,
        AnnotateFileConfig,
        ClassifierConfig,
        LLMConfig,
        QualityConfig,
        SourceConfig,
        annotate_file,
    )

    if engine not in ("local", "ray"):
        raise TreasureError(f"--engine must be local or ray, got {engine!r}")
    if length_buckets not in ("taxonomy", "quantile"):
        raise TreasureError(f"--length-buckets must be taxonomy or quantile, got {length_buckets!r}")
    llm = None
    if llm_endpoint or llm_model:
        if not (llm_endpoint and llm_model):
            raise TreasureError("--llm-endpoint and --llm-model go together")
        llm = LLMConfig(
            endpoint=llm_endpoint,
            model=llm_model,
            concurrency=llm_concurrency,
            cache_dir=llm_cache,
            api_key_env=llm_api_key_env,
        )
    config = AnnotateConfig(
        annotators=_split(annotators),
        taxonomy=Taxonomy.load(taxonomy),
        engine=engine,  # type: ignore[arg-type]
        num_proc=num_proc,
        batch_size=batch_size,
        shard_size=shard_size,
        length_buckets=length_buckets,  # type: ignore[arg-type]
        source=SourceConfig(
            value=source, from_field=source_field, mapping=dict(parse_marker_args(source_map))
        ),
        classifier=ClassifierConfig(threshold=threshold),
        quality=QualityConfig(reward_model=reward_model),
        llm=llm,
        progress=not quiet,
    )
    annotated = annotate_file(
        input_path,
        output,
        AnnotateFileConfig(
            preset=preset,
            fields=dict(parse_marker_args(field)),
            resume=resume,
            overwrite=overwrite,
            keep_work_dir=keep_work,
            max_reject_rate=max_reject_rate,
            annotate=config,
        ),
    )
    stats = annotated.stats
    if not quiet:
        print_distribution(stats.data, f"{output}: {stats.n_rows} rows, {stats.rejected} rejected")
    if stats.rejected:  # said even with --quiet: rows were left out
        err_console.print(f"[yellow]{stats.rejected} input rows rejected[/]; see {annotated.rejects_file}")
    console.print(f"wrote {annotated.path}, {annotated.stats_file}, {annotated.taxonomy_file}")


@train_app.command("quality")
def train_quality_command(
    out: Path | None = typer.Option(
        None, "--out", help="Weights file (default: the shipped resources/quality.npz)."
    ),
    alpha: float = typer.Option(10.0, help="Ridge regularisation."),
    seed: int = typer.Option(0, help="Seed of the train/held-out split."),
) -> None:
    """Train the embedded quality regressor on the bundled ChatGPT quality scores; print held-out scores."""
    from treasure.annotate import TrainQualityConfig, train_quality

    config = TrainQualityConfig(alpha=alpha, seed=seed)
    if out is not None:
        config = TrainQualityConfig(out=out, alpha=alpha, seed=seed)
    console.print_json(data=train_quality(config))


@train_app.command("classifier")
def train_classifier_command(
    out: Path | None = typer.Option(
        None, "--out", help="Weights file (default: the shipped resources/classifier.npz)."
    ),
    c: float = typer.Option(4.0, "--c", help="Inverse L2 strength."),
) -> None:
    """Train the task/domain classifier on the shipped seed set."""
    from treasure.annotate import TrainClassifierConfig, train_classifier

    config = TrainClassifierConfig(c=c) if out is None else TrainClassifierConfig(out=out, c=c)
    console.print_json(data=train_classifier(config))


def register(app: typer.Typer) -> None:
    app.command("annotate")(annotate_command)
    app.add_typer(train_app, name="annotate-train")
