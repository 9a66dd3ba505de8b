"""`treasure serve`: an OpenAI-compatible API over a model dir."""

from __future__ import annotations

from pathlib import Path

import typer

from treasure.cli import console
from treasure.generate import GenerationConfig
from treasure.serve import ServeConfig, serve


def serve_command(
    model_dir: Path = typer.Argument(
        ..., help="Model dir written by `treasure train`, or a registry name (`treasure models list`)."
    ),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="TCP port."),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar="TREASURE_API_KEY", help="Require 'Authorization: Bearer KEY'."
    ),
    backend: str = typer.Option("transformers", help="transformers or vllm."),
    max_new_tokens: int = typer.Option(256, help="Default completion length cap (requests may lower it)."),
    temperature: float = typer.Option(0.7, help="Default sampling temperature (0 = greedy)."),
    seed: int = typer.Option(0, help="Default seed for requests that give none."),
) -> None:
    """Serve /v1/chat/completions (with a `markers` extension), /v1/models and /health."""
    generation = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    console.print(f"serving {model_dir} on http://{host}:{port}/v1 ({backend})")
    serve(model_dir, ServeConfig(host, port, api_key, backend, generation))


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
