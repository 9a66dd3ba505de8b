"""`treasure taxonomy`, `treasure template` and `treasure data`: inspect and debug the foundations."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.table import Table

from treasure import io, row_formats, template
from treasure.annotate.registry import REGISTRY
from treasure.cli import console
from treasure.cli._from_config import name_values
from treasure.taxonomy import GIVEN, Taxonomy

taxonomy_app = typer.Typer(help="Show or validate a marker taxonomy.", no_args_is_help=True)
template_app = typer.Typer(help="Render or parse a <TEMPLATE> block (debug helpers).", no_args_is_help=True)
data_app = typer.Typer(help="Inspect a dataset file.", no_args_is_help=True)

TaxonomyOpt = typer.Option(None, "--taxonomy", "-t", help="Taxonomy YAML (default: the paper's 13).")


@taxonomy_app.command("show")
def taxonomy_show(
    file: Path | None = typer.Argument(None, metavar="FILE", help="Taxonomy YAML; default if omitted."),
) -> None:
    """Print every marker: kind, values or range, the annotators making it, whether users may set it."""
    tax = Taxonomy.load(file)
    makers = REGISTRY.makers(tax)
    table = Table(title=f"taxonomy sha256:{tax.content_hash()[:12]}")
    for column in ("marker", "kind", "annotator", "user"):
        table.add_column(column, no_wrap=True)
    table.add_column("values / rule", ratio=1)
    for marker in tax.markers.values():
        rule = ", ".join(marker.values) if marker.values else marker.description
        if marker.thresholds:
            rule += f"  (thresholds {list(marker.thresholds)} on {marker.of})"
        made_by = ", ".join(dict.fromkeys((*makers[marker.name], *REGISTRY.producers(marker.name))))
        table.add_row(
            marker.name, marker.kind, made_by or GIVEN, "yes" if marker.user_settable else "no", rule
        )
    console.print(table)


@taxonomy_app.command("validate")
def taxonomy_validate(file: Path = typer.Argument(..., metavar="FILE", help="Taxonomy YAML.")) -> None:
    """Validate a taxonomy YAML (every problem is listed with its key) and its annotator names."""
    tax = Taxonomy.load(file)
    REGISTRY.makers(tax)
    console.print(
        f"[green]ok[/] {file}: {len(tax.markers)} markers, sha256:{tax.content_hash()}", soft_wrap=True
    )


@template_app.command("render")
def template_render(
    marker: list[str] = typer.Argument(..., metavar="NAME=VALUE...", help="NAME=VALUE pairs."),
    taxonomy: Path | None = TaxonomyOpt,
) -> None:
    """Render markers as a template block."""
    pairs = name_values(marker)
    sys.stdout.write(template.render(pairs, Taxonomy.load(taxonomy)))


@template_app.command("parse")
def template_parse(
    file: Path | None = typer.Argument(None, metavar="FILE", help="Text file (default: stdin)."),
    taxonomy: Path | None = TaxonomyOpt,
) -> None:
    """Parse model output: markers, response, and what was wrong if anything."""
    text = file.read_text(encoding="utf-8") if file else sys.stdin.read()
    parsed = template.parse(text, Taxonomy.load(taxonomy))
    console.print_json(
        data={
            "markers": parsed.markers,
            "response": parsed.response,
            "error": parsed.error,
            "has_block": parsed.has_block,
        }
    )


@data_app.command("inspect")
def data_inspect(
    file: Path = typer.Argument(..., metavar="FILE", help="JSONL, JSON, CSV, Parquet or HF dataset dir."),
    preset: str | None = typer.Option(
        None, help=f"One of {', '.join(row_formats.PRESETS)} (default: detect)."
    ),
    field: list[str] = typer.Option(
        [], "--field", help="NAME=INPUT_FIELD: read schema field or marker NAME from INPUT_FIELD; repeatable."
    ),
    taxonomy: Path | None = TaxonomyOpt,
    errors: int = typer.Option(5, help="How many errors to show."),
) -> None:
    """Rows, fields, detected preset and the first errors of a dataset file (writes nothing)."""
    result = io.load(
        file,
        preset=preset,
        fields=name_values(field),
        taxonomy=Taxonomy.load(taxonomy),
        skip_invalid=True,
        write_rejects=False,
    )
    ds = result.dataset
    console.print(
        f"{file}: {len(ds)} rows, preset {result.preset}, {len(result.rejected)} rejected",
        soft_wrap=True,
        highlight=False,
    )
    table = Table()
    for column in ("field", "non-null", "first value"):
        table.add_column(column, justify="right" if column == "non-null" else "left")
    for name in ds.column_names:
        values = ds[name]
        first = next((v for v in values if v is not None), None)
        shown = "" if first is None else " ".join(str(first).split())
        table.add_row(
            name, str(sum(v is not None for v in values)), shown[:60] + ("…" if len(shown) > 60 else "")
        )
    console.print(table)
    for error in result.rejected[:errors]:
        console.print(f"[red]{error}[/]", markup=True, highlight=False, soft_wrap=True)
    if len(result.rejected) > errors:
        console.print(f"… and {len(result.rejected) - errors} more")


def register(app: typer.Typer) -> None:
    app.add_typer(taxonomy_app, name="taxonomy")
    app.add_typer(template_app, name="template")
    app.add_typer(data_app, name="data")
