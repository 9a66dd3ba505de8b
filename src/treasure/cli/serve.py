"""`treasure serve`: an OpenAI-compatible API over a model dir.

Its options are `ServeConfig`'s fields (declared there, with their help; the request defaults come from
`GenerationConfig`) plus MODEL_DIR."""

from __future__ import annotations

import typer

from treasure.cli import console
from treasure.cli._from_config import command, parameter
from treasure.serve import ServeConfig, serve

MODEL_DIR = parameter(
    "model_dir",
    str,
    typer.Argument(
        ...,
        metavar="MODEL_DIR",
        help="Model dir written by `treasure train`, or a registry name (`treasure models list`).",
    ),
)


def serve_command(config: ServeConfig, model_dir: str) -> None:
    """Serve /v1/chat/completions (with a `markers` extension), /v1/completions, /v1/models and /health."""
    engine = f"upstream {config.upstream}" if config.upstream else config.backend
    console.print(f"serving {model_dir} on http://{config.host}:{config.port}/v1 ({engine})")
    serve(model_dir, config)


def register(app: typer.Typer) -> None:
    app.command("serve")(command(ServeConfig, serve_command, extra=[MODEL_DIR]))
