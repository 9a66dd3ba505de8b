"""The server: `ServeConfig`, `create_app` (the limits, the error bodies and the handlers on their routes)
and `serve` (uvicorn, with a drain on SIGTERM)."""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from treasure.backends import refuse_guidance
from treasure.backends.upstream import UpstreamError, engine_urls
from treasure.errors import MarkerError, TreasureError
from treasure.generate import GenerationConfig, Generator
from treasure.knobs import knob
from treasure.serve.handlers import ChatHandler, CompletionHandler, ModelsHandler
from treasure.serve.limits import (
    ENGINE_IN_FLIGHT,
    TRANSFORMERS_IN_FLIGHT,
    Admission,
    BodyLimit,
    Limits,
    admission_threads,
)
from treasure.serve.protocol import RESPONSES, error_response


@dataclass
class ServeConfig:
    """Where to listen, the optional API key, the backend and default decoding options."""

    host: str = field(default="127.0.0.1", metadata=knob("Interface to listen on."))
    port: int = field(default=8000, metadata=knob("TCP port."))
    api_key: str | None = field(
        default=None, metadata=knob("Require 'Authorization: Bearer KEY'.", envvar="TREASURE_API_KEY")
    )
    backend: str = field(
        default="transformers", metadata=knob("transformers or vllm (ignored with --upstream).")
    )
    generation: GenerationConfig = field(default_factory=GenerationConfig)  # defaults for requests
    log_level: str = field(
        default="warning", metadata=knob("uvicorn log level (debug, info, warning, error).")
    )
    max_body_bytes: int = field(default=1 << 20, metadata=knob("Larger request bodies get 413."))
    max_queue: int | None = field(
        default=None,
        metadata=knob(
            f"Requests in flight at once (default: {TRANSFORMERS_IN_FLIGHT} on transformers, "
            f"{ENGINE_IN_FLIGHT} per engine with --backend vllm or --upstream); more wait (--max-waiting)."
        ),
    )
    max_waiting: int | None = field(
        default=None,
        metadata=knob(
            "Requests that wait for a slot beyond --max-queue, first come first served (default: 0 on "
            "transformers, as many as --max-queue with vllm or --upstream); more get 503 + Retry-After."
        ),
    )
    queue_timeout_s: float = field(
        default=30.0,
        metadata=knob("Seconds a request may wait for a slot (then 503 + Retry-After).", "--queue-timeout"),
    )
    request_timeout_s: float = field(
        default=120.0,
        metadata=knob(
            "Seconds a request may take, from admission to its last token (then 504).", "--request-timeout"
        ),
    )
    drain_s: float = field(
        default=10.0, metadata=knob("On SIGTERM, seconds in-flight requests get before they stop.", "--drain")
    )
    turn_tokens: int = field(
        default=16,
        metadata=knob("transformers: hand the model to a waiting request every N tokens (0: never)."),
    )
    upstream: str | None = field(
        default=None,
        metadata=knob(
            "Base URL (…/v1) of an OpenAI-compatible engine (vLLM, llama.cpp server, …) that generates, or "
            "several, comma-separated (each request goes to the live one with the fewest in flight); "
            "treasure adds the marker layer. MODEL_DIR then only provides tokenizer, chat template, taxonomy."
        ),
    )
    upstream_model: str | None = field(
        default=None, metadata=knob("Model name sent upstream (default: MODEL_DIR's name).")
    )
    upstream_api_key_env: str = field(
        default="UPSTREAM_API_KEY",
        metadata=knob("Environment variable holding the engine's API key (if it needs one)."),
    )
    upstream_timeout_s: float = field(
        default=60.0, metadata=knob("Seconds without a byte from the engine → 504.", "--upstream-timeout")
    )
    upstream_retry_after_s: float = field(
        default=5.0,
        metadata=knob(
            "Seconds an engine that failed (unreachable, silent, 5xx) sits out; its requests go to another.",
            "--upstream-retry-after",
        ),
    )

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be {rule}, got {getattr(self, name)!r}"
            for name, ok, rule in (
                ("port", 0 <= self.port <= 65535, "a TCP port (0-65535)"),
                ("max_body_bytes", self.max_body_bytes >= 1024, "at least 1024"),
                ("max_queue", self.max_queue is None or self.max_queue >= 1, "at least 1"),
                ("max_waiting", self.max_waiting is None or self.max_waiting >= 0, "0 or more"),
                ("queue_timeout_s", self.queue_timeout_s >= 0, "0 or more"),
                ("upstream_retry_after_s", self.upstream_retry_after_s >= 0, "0 or more"),
                ("request_timeout_s", self.request_timeout_s > 0, "above 0"),
                ("drain_s", self.drain_s >= 0, "0 or more"),
                ("turn_tokens", self.turn_tokens >= 0, "0 (off) or more"),
                ("backend", self.backend in ("transformers", "vllm"), "transformers or vllm"),
                (
                    "log_level",
                    self.log_level in ("critical", "error", "warning", "info", "debug", "trace"),
                    "a uvicorn log level",
                ),
            )
            if not ok
        ]
        if problems:
            raise TreasureError("invalid serve options: " + "; ".join(problems))
        if self.upstream:
            engine_urls(self.upstream)  # each URL checked before anything is loaded
        if self.upstream or self.backend == "vllm":  # refused before an engine is loaded for nothing
            refuse_guidance(self.generation, "an upstream engine" if self.upstream else "vLLM")

    def in_flight_limit(self) -> int:
        """`max_queue`, else the backend's: one generation batch at a time on transformers; on a batching
        engine (vLLM, every `--upstream` engine) as many as it schedules at once."""
        if self.max_queue is not None:
            return self.max_queue
        if self.upstream:
            return ENGINE_IN_FLIGHT * len(engine_urls(self.upstream))
        return ENGINE_IN_FLIGHT if self.backend == "vllm" else TRANSFORMERS_IN_FLIGHT

    def waiting_limit(self) -> int:
        """`max_waiting`, else none on transformers (its admitted requests already wait for their turns)
        and the in-flight limit on a batching engine."""
        if self.max_waiting is not None:
            return self.max_waiting
        return self.in_flight_limit() if self.upstream or self.backend == "vllm" else 0


def _key_check(api_key: str | None) -> Callable[[Request], None]:
    """The dependency that refuses (401) a request without `Authorization: Bearer API_KEY`."""

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        header = request.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else ""
        if not secrets.compare_digest(token.encode(), api_key.encode()):
            raise HTTPException(401, "invalid or missing API key (send 'Authorization: Bearer KEY')")

    return check_key


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    kind = "authentication_error" if exc.status_code == 401 else "invalid_request_error"
    return error_response(exc.status_code, str(exc.detail), kind, getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in errors)
    # text that is not Unicode, or a conversation not ending with a user turn, is a malformed request
    # (400); a field that breaks the schema is 422
    status = 400 if any(e["type"] in ("invalid_text", "invalid_conversation") for e in errors) else 422
    return error_response(status, f"invalid request: {problems}")


async def _upstream_error(request: Request, exc: UpstreamError) -> JSONResponse:
    return error_response(exc.status, str(exc), "upstream_error")


async def _marker_error(request: Request, exc: MarkerError) -> JSONResponse:
    return error_response(422, str(exc))


async def _treasure_error(request: Request, exc: TreasureError) -> JSONResponse:
    return error_response(400, str(exc))


# every error an OpenAI-style body, never a 5xx for a bad request
ERROR_HANDLERS: dict[Any, Callable[..., Any]] = {
    HTTPException: _http_error,
    RequestValidationError: _validation_error,
    UpstreamError: _upstream_error,
    MarkerError: _marker_error,
    TreasureError: _treasure_error,
}


def create_app(generator: Generator, config: ServeConfig | None = None) -> FastAPI:
    """Build the FastAPI app serving `generator`: limits, error bodies, the handlers on their routes."""
    config = config or ServeConfig()
    defaults = config.generation or GenerationConfig()
    generator.check(defaults)  # e.g. default marker guidance on a backend without it: refused at start
    app = FastAPI(
        title="treasure", version="1", lifespan=admission_threads, exception_handlers=ERROR_HANDLERS
    )
    app.add_middleware(BodyLimit, limit=config.max_body_bytes)
    app.state.admission = Admission(config.in_flight_limit(), config.waiting_limit(), config.queue_timeout_s)
    context = getattr(generator.backend, "context_length", None)
    limits = Limits(app.state.admission, context, config.request_timeout_s)
    models, secured = ModelsHandler(generator), [Depends(_key_check(config.api_key))]
    app.get("/health")(models.health)
    app.get("/v1/models", dependencies=secured)(models.models)
    for handler in (CompletionHandler, ChatHandler):
        route = handler(generator, limits, defaults).route()
        app.post(handler.path, dependencies=secured, response_model=None, responses=RESPONSES)(route)
    return app


def serve(model_dir: str | Path, config: ServeConfig | None = None) -> None:
    """Load a model dir and serve it with uvicorn until interrupted (SIGINT/SIGTERM drain, then stop)."""
    import uvicorn

    config = config or ServeConfig()
    backend, options = config.backend, {}
    if config.upstream:
        backend = "upstream"
        options = {
            "url": config.upstream,
            "model": config.upstream_model,
            "api_key": os.environ.get(config.upstream_api_key_env),
            "timeout_s": config.upstream_timeout_s,
            "retry_after_s": config.upstream_retry_after_s,
        }
    elif backend == "transformers":
        options = {"turn_tokens": config.turn_tokens}
    generator = Generator.from_model_dir(model_dir, backend=backend, **options)
    app = create_app(generator, config)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level=config.log_level,
            timeout_graceful_shutdown=max(1, round(config.drain_s)),
        )
    )
    exit_on_signal = server.handle_exit

    def drain_then_stop(sig: int, frame: Any) -> None:
        # uvicorn stops accepting and waits for in-flight requests; after drain_s they are stopped
        timer = threading.Timer(config.drain_s, app.state.admission.stop_all)
        timer.daemon = True
        timer.start()
        exit_on_signal(sig, frame)

    server.handle_exit = drain_then_stop  # type: ignore[method-assign]
    server.run()
