"""`treasure models list|prepare`: the named base models and their local cache."""

from __future__ import annotations

import typer
from rich.table import Table

from treasure import models
from treasure.cli import console

models_app = typer.Typer(help="Named base models (registry) and their local cache.", no_args_is_help=True)


@models_app.command("list")
def models_list() -> None:
    """Every registry name, what it is and whether it is ready to use."""
    table = Table(title=f"models (cache: {models.cache_root()})")
    for column in ("name", "description", "status"):
        table.add_column(column)
    table.add_row(
        models.TINY, "tiny Llama trained from scratch on your data (tests, `--recipe tiny`)", "built-in"
    )
    for name, entry in models.REGISTRY.items():
        table.add_row(name, entry.description, models.status(name))
    console.print(table)


@models_app.command("prepare")
def models_prepare(
    name: str = typer.Argument(..., metavar="NAME", help="Registry name, e.g. smollm2-135m."),
    force: bool = typer.Option(False, "--force", help="Rebuild even when the cached dir checks out."),
) -> None:
    """Convert a registry model into the cache (once); prints its local HF dir."""
    path = models.prepare(name, force=force, log=console.print)
    console.print(f"[green]ready[/] {name}: {path}")


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
