"""`treasure serve`: an OpenAI-compatible API over a model dir."""

from __future__ import annotations

import os
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
    max_body_bytes: int = typer.Option(1 << 20, help="Larger request bodies get 413."),
    max_queue: int = typer.Option(16, help="Requests in flight at once (more get 503 + Retry-After)."),
    request_timeout: float = typer.Option(120.0, help="Seconds a request may take (then 504)."),
    drain: float = typer.Option(10.0, help="On SIGTERM, seconds in-flight requests get before they stop."),
    upstream: str | None = typer.Option(
        None,
        help="Base URL (…/v1) of an OpenAI-compatible engine (vLLM, llama.cpp server, …) that generates; "
        "treasure adds the marker layer. MODEL_DIR then only provides tokenizer, chat template, taxonomy.",
    ),
    upstream_model: str | None = typer.Option(
        None, help="Model name sent upstream (default: MODEL_DIR's name)."
    ),
    upstream_api_key_env: str = typer.Option(
        "UPSTREAM_API_KEY", help="Environment variable holding the engine's API key (if it needs one)."
    ),
    upstream_timeout: float = typer.Option(60.0, help="Seconds without a byte from the engine → 504."),
    turn_tokens: int = typer.Option(
        16,
        help="transformers: hand the model to a waiting request every N tokens (0: never).",
    ),
) -> None:
    """Serve /v1/chat/completions (with a `markers` extension), /v1/models and /health."""
    generation = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    config = ServeConfig(
        host,
        port,
        api_key,
        backend,
        generation,
        max_body_bytes=max_body_bytes,
        max_queue=max_queue,
        request_timeout_s=request_timeout,
        drain_s=drain,
        turn_tokens=turn_tokens,
        upstream=upstream,
        upstream_model=upstream_model,
        upstream_api_key=os.environ.get(upstream_api_key_env),
        upstream_timeout_s=upstream_timeout,
    )
    engine = f"upstream {upstream}" if upstream else backend
    console.print(f"serving {model_dir} on http://{host}:{port}/v1 ({engine})")
    serve(model_dir, config)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
