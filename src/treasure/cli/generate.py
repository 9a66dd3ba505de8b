"""`treasure generate`: answers from a model dir under conditioning, controlling or fixed markers.

Its options are `GenerateConfig`'s fields (with `GenerationConfig`'s) plus the model, the prompts, the
given markers and the output."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from treasure.cli import console
from treasure.cli._from_config import command, name_values, parameter
from treasure.errors import MarkerError, TreasureError
from treasure.generate import GenerateConfig, Generator, ModelMarkers, resolve_mode
from treasure.io import write_jsonl
from treasure.prompt_file import output_row, read_prompts

IO = [
    parameter(
        "model_dir",
        str,
        typer.Argument(
            ...,
            metavar="MODEL_DIR",
            help="Model dir written by `treasure train`, or a registry name (`treasure models list`).",
        ),
    ),
    parameter("prompt", str | None, typer.Option(None, "--prompt", "-p", help="One prompt.")),
    parameter(
        "prompts", Path | None, typer.Option(None, "--prompts", help="JSONL rows with `id` and `prompt`.")
    ),
    parameter(
        "marker", list[str], typer.Option([], "--marker", "-m", help="NAME=VALUE, repeatable (controlling).")
    ),
    parameter(
        "show_markers",
        bool,
        typer.Option(False, "--show-markers", help="Print the markers beside the answer."),
    ),
    parameter(
        "output",
        Path | None,
        typer.Option(None, "--output", "-o", help="Write JSON lines here (default: stdout)."),
    ),
    parameter(
        "overwrite", bool, typer.Option(False, "--overwrite", help="Replace an existing --output file.")
    ),
]


def generate_command(
    config: GenerateConfig,
    model_dir: str,
    prompt: str | None,
    prompts: Path | None,
    marker: list[str],
    show_markers: bool,
    output: Path | None,
    overwrite: bool,
) -> None:
    """Generate answers; writes `id, prompt, response, markers, markers_error` per prompt."""
    if (prompt is None) == (prompts is None):
        raise TreasureError("give exactly one of --prompt TEXT or --prompts FILE.jsonl")
    if output is not None and output.exists() and not overwrite:
        raise TreasureError(
            f"{output}: exists; add --overwrite to replace it (kept until the new one is written)"
        )
    given = name_values(marker) or None
    mode = resolve_mode(config.mode, given)
    # markers are checked against the model dir's taxonomy and trained markers before any weights load
    known = ModelMarkers.of(model_dir)
    rows = (
        read_prompts(prompts, known.taxonomy) if prompts else [{"id": "0", "prompt": prompt, "markers": None}]
    )
    markers = [{**(row["markers"] or {}), **(given or {})} or None for row in rows]
    for row, row_markers in zip(rows, markers, strict=True):
        try:
            known.check(row_markers, mode, config.strict)
        except MarkerError as exc:
            raise MarkerError(
                f"{prompts}: prompt {row['id']}: {exc}" if row["markers"] else str(exc)
            ) from None
    generator = Generator.from_model_dir(model_dir, backend=config.backend)
    texts = [row["prompt"] for row in rows]
    if prompts is not None:
        columns = (TextColumn("generating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("generate", total=len(rows))
            results = generator.generate(
                texts,
                mode,
                markers,
                config.strict,
                config.generation,
                progress=lambda n: bar.advance(task, n),
            )
    else:
        results = generator.generate(texts, mode, markers, config.strict, config.generation)
    out_rows = [output_row(row["id"], result) for row, result in zip(rows, results, strict=True)]
    if output is not None:
        write_jsonl(out_rows, output)
        console.print(f"wrote {len(out_rows)} rows to {output}")
    elif prompts is not None:
        for row in out_rows:
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
    else:
        result = results[0]
        if show_markers:
            console.print_json(data={"markers": result.markers, "markers_error": result.markers_error})
        sys.stdout.write(result.response.rstrip("\n") + "\n")


def register(app: typer.Typer) -> None:
    app.command("generate")(command(GenerateConfig, generate_command, extra=IO))
