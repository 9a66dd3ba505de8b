"""The `treasure` command line: a Typer app. Each module in this package registers its commands.

Modules only parse arguments and call library functions. Any `TreasureError` prints one clear line and
exits 1; `--verbose` shows the traceback.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import traceback

import click
import typer
from rich.console import Console

app = typer.Typer(
    name="treasure",
    help="Training-time markers: annotate → build → train → generate/serve → evaluate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)
STATE = {"verbose": False}


@app.callback()
def _root(
    verbose: bool = typer.Option(
        False,
        "--verbose",
        "-v",
        help="Show tracebacks on errors, and third-party progress bars and warnings.",
    ),
) -> None:
    STATE["verbose"] = verbose


def _register_commands() -> None:
    """Import every command module of this package and let it register its commands (once)."""
    if STATE.get("registered"):
        return
    for module in sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")):
        importlib.import_module(f"{__name__}.{module}").register(app)
    STATE["registered"] = True


def message(exc: Exception) -> str:
    """The error's text; an HTTP client's error (e.g. a dead tagger or judge endpoint's "Connection error.")
    also names the URL it was sending to."""
    try:
        url = str(exc.request.url)  # type: ignore[attr-defined]  # openai's and httpx's errors carry it
    except (AttributeError, RuntimeError):  # httpx raises RuntimeError when no request is set
        return str(exc)
    return str(exc) if url in str(exc) else f"{url}: {exc}"


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    _register_commands()
    args = sys.argv[1:] if argv is None else argv
    STATE["verbose"] = "--verbose" in args or "-v" in args
    if not STATE["verbose"]:
        from treasure.quiet import quiet

        quiet()
    try:
        code = app(args=args, standalone_mode=False)
    except (click.exceptions.ClickException, typer.TyperException) as exc:  # typer vendors its own click
        exc.show()
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, typer.Abort, KeyboardInterrupt):
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)
    except Exception as exc:  # one clear line for the user; the traceback on request
        if STATE["verbose"]:
            traceback.print_exc()
        err_console.print(f"[bold red]error:[/] {message(exc)}", markup=True, highlight=False, soft_wrap=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
