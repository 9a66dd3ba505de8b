"""OpenAI-compatible HTTP API over a `Generator` (FastAPI app factory + uvicorn runner).

Endpoints: `POST /v1/chat/completions` (with the `markers`, `treasure_mode` and `treasure_strict`
extension fields; the answer is in `message.content`, the markers in a `treasure` object),
`GET /v1/models`, `GET /health`. Streaming (SSE) sends answer text only: the template block is held
back until it is closed. Bad requests get a 4xx with an OpenAI-style error body, never a 5xx.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException

from treasure.errors import MarkerError, TreasureError
from treasure.generate import Generation, GenerationConfig, Generator


@dataclass
class ServeConfig:
    """Where to listen, the optional API key, the backend and default decoding options."""

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    backend: str = "transformers"
    generation: GenerationConfig | None = None
    log_level: str = "warning"


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(BaseModel):
    """The OpenAI chat request fields treasure understands, plus its extensions."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1, le=8192)
    max_completion_tokens: int | None = Field(None, ge=1, le=8192)
    seed: int | None = None
    n: int = Field(1, ge=1, le=1)
    stream: bool = False
    markers: dict[str, str | int | float] | None = None
    treasure_mode: Literal["conditioning", "controlling", "fixed"] | None = None
    treasure_strict: bool = False

    @field_validator("messages")
    @classmethod
    def _last_is_user(cls, messages: list[Message]) -> list[Message]:
        if messages[-1].role != "user":
            raise ValueError("the last message must have role 'user'")
        return messages


def _error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


def create_app(generator: Generator, config: ServeConfig | None = None) -> FastAPI:
    """Build the FastAPI app serving `generator`."""
    config = config or ServeConfig()
    defaults = config.generation or GenerationConfig()
    app = FastAPI(title="treasure", version="1")
    created = int(time.time())

    def check_key(request: Request) -> None:
        if config.api_key is None:
            return
        header = request.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else ""
        if not secrets.compare_digest(token.encode(), config.api_key.encode()):
            raise HTTPException(401, "invalid or missing API key (send 'Authorization: Bearer KEY')")

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), "authentication_error" if exc.status_code == 401 else
                      "invalid_request_error")  # fmt: skip

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in exc.errors()
        )
        return _error(422, f"invalid request: {problems}")

    @app.exception_handler(MarkerError)
    async def _marker_error(request: Request, exc: MarkerError) -> JSONResponse:
        return _error(422, str(exc))

    @app.exception_handler(TreasureError)
    async def _treasure_error(request: Request, exc: TreasureError) -> JSONResponse:
        return _error(400, str(exc))

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": generator.name, "marked": generator.marked}

    @app.get("/v1/models", dependencies=[Depends(check_key)])
    def models() -> dict[str, Any]:
        card = {"id": generator.name, "object": "model", "created": created, "owned_by": "treasure"}
        return {"object": "list", "data": [card]}

    @app.post("/v1/chat/completions", dependencies=[Depends(check_key)], response_model=None)
    def chat(body: ChatRequest) -> dict[str, Any] | StreamingResponse:
        mode = body.treasure_mode or ("controlling" if body.markers else "conditioning")
        gen_config = GenerationConfig(
            max_new_tokens=body.max_completion_tokens or body.max_tokens or defaults.max_new_tokens,
            temperature=defaults.temperature if body.temperature is None else body.temperature,
            top_p=body.top_p or defaults.top_p,
            top_k=defaults.top_k,
            repetition_penalty=defaults.repetition_penalty,
            seed=defaults.seed if body.seed is None else body.seed,
            batch_size=1,
        )
        history = [m.model_dump() for m in body.messages[:-1]]
        prompt = body.messages[-1].content
        # validate now, so a bad marker is a 422 before any streaming starts
        prepared = generator.prepare(prompt, mode, body.markers, body.treasure_strict, history)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        if body.stream:
            pieces = generator.stream(prompt, mode, body.markers, body.treasure_strict, gen_config, history)
            return StreamingResponse(
                _sse(pieces, completion_id, generator.name), media_type="text/event-stream"
            )
        completion = generator.backend.complete([prepared.text], gen_config)[0]
        result = generator.finish(prepared, completion)
        prompt_tokens = generator.backend.count_tokens(prepared.text)
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": generator.name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.response},
                    "finish_reason": _finish_reason(result),
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": result.n_tokens,
                "total_tokens": prompt_tokens + result.n_tokens,
            },
            "treasure": _treasure(result),
        }

    return app


def _finish_reason(result: Generation) -> str:
    return "stop" if result.finished else "length"


def _treasure(result: Generation) -> dict[str, Any]:
    return {
        "mode": result.mode,
        "markers": result.markers,
        "markers_error": result.markers_error,
        "given_markers": result.given_markers,
    }


def _sse(pieces: Iterator[str | Generation], completion_id: str, model: str) -> Iterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    for item in pieces:
        if isinstance(item, Generation):
            yield chunk({}, _finish_reason(item), treasure=_treasure(item))
        else:
            yield chunk({"content": item})
    yield "data: [DONE]\n\n"


def serve(model_dir: str | Path, config: ServeConfig | None = None) -> None:
    """Load a model dir and serve it with uvicorn until interrupted."""
    import uvicorn

    config = config or ServeConfig()
    generator = Generator.from_model_dir(model_dir, backend=config.backend)
    uvicorn.run(create_app(generator, config), host=config.host, port=config.port, log_level=config.log_level)
