"""OpenAI-compatible HTTP API over a `Generator` (FastAPI app factory + uvicorn runner).

Endpoints: `POST /v1/chat/completions` (with the `markers`, `treasure_mode`, `treasure_strict`, `guidance`
and `length_budget` extension fields; the answer is in `message.content`, the markers in a `treasure`
object),
`GET /v1/models`, `GET /health`. Streaming (SSE) sends answer text only: the template block is held
back until it is closed. Bad requests get a 4xx with an OpenAI-style error body, never a 5xx.

Limits (`ServeConfig`): request bodies over `max_body_bytes` get 413; prompt tokens + `max_tokens`
over the model's context get 400; more than `max_queue` requests at once get 503 with `Retry-After`;
a request still generating after `request_timeout_s` is stopped (504, or an error event when
streaming); a client that disconnects stops its generation; on SIGTERM in-flight requests get
`drain_s` seconds, then are stopped.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as ASGIMessage

from treasure.backends import MAX_GUIDANCE, Stop, refuse_guidance
from treasure.backends.upstream import UpstreamError
from treasure.errors import MarkerError, TreasureError
from treasure.generate import Generation, GenerationConfig, Generator, Mode, resolve_mode
from treasure.knobs import knob
from treasure.taxonomy import Taxonomy


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
    max_queue: int = field(
        default=16, metadata=knob("Requests in flight at once (more get 503 + Retry-After).")
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
            "Base URL (…/v1) of an OpenAI-compatible engine (vLLM, llama.cpp server, …) that generates; "
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

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be {rule}, got {getattr(self, name)!r}"
            for name, ok, rule in (
                ("port", 0 <= self.port <= 65535, "a TCP port (0-65535)"),
                ("max_body_bytes", self.max_body_bytes >= 1024, "at least 1024"),
                ("max_queue", self.max_queue >= 1, "at least 1"),
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
        if self.upstream or self.backend == "vllm":  # refused before an engine is loaded for nothing
            refuse_guidance(self.generation, "an upstream engine" if self.upstream else "vLLM")


def _valid_text(text: str) -> str:
    """Refuse text that cannot be encoded as UTF-8 (a lone surrogate such as '\\ud800')."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError("invalid_text", "text is not valid Unicode (lone surrogate)") from None
    return text


def _json_int(value: Any) -> Any:
    """JSON integers, including JSON Schema's integral numbers such as 8.0; never booleans or text."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise PydanticCustomError("int_from_float", "Input should be a valid integer")
        return int(value)
    return value


JsonInt = Annotated[int, BeforeValidator(_json_int)]
# (the constraint before the validator, so the schema says "minimum")
PositiveJsonInt = Annotated[int, Field(ge=1), BeforeValidator(_json_int)]
# Seeds up to 2**53 - 1: larger JSON integers compare inexactly in JSON Schema validators (as doubles)
SeedInt = Annotated[int, Field(ge=0, le=2**53 - 1), BeforeValidator(_json_int)]
MarkerValues = dict[str, StrictStr | StrictInt | StrictFloat]


class TextPart(BaseModel):
    """One part of an OpenAI content list; only text parts are accepted."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]

    @field_validator("content")
    @classmethod
    def _joined(cls, content: str | list[TextPart]) -> str:
        text = content if isinstance(content, str) else "".join(part.text for part in content)
        return _valid_text(text)


class ChatRequest(BaseModel):
    """The OpenAI chat request fields treasure understands, plus its extensions."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0, le=2, strict=True)
    top_p: float | None = Field(None, gt=0, le=1, strict=True)
    max_tokens: PositiveJsonInt | None = None
    max_completion_tokens: PositiveJsonInt | None = None
    seed: SeedInt | None = None
    n: JsonInt = Field(1, ge=1, le=1)
    stream: StrictBool = False
    markers: MarkerValues | None = None
    treasure_mode: Mode | None = None
    treasure_strict: StrictBool = False
    guidance: float | None = Field(
        None,
        ge=0,
        le=MAX_GUIDANCE,
        strict=True,
        allow_inf_nan=False,
        description="marker guidance scale G (1 = off; default: the server's); transformers backend only",
    )
    length_budget: StrictBool | None = Field(
        None, description="hold the answer to the given length_tokens words (default: the server's)"
    )

    @model_validator(mode="after")
    def _valid_unicode(self) -> ChatRequest:
        for text in [self.model or "", *(self.markers or {}), *(self.markers or {}).values()]:
            if isinstance(text, str):
                _valid_text(text)
        return self

    @field_validator("messages")
    @classmethod
    def _last_is_user(cls, messages: list[Message]) -> list[Message]:
        if messages[-1].role != "user":  # a rule no JSON schema can state: a 400, like bad text
            raise PydanticCustomError("invalid_conversation", "the last message must have role 'user'")
        return messages


class CompletionRequest(BaseModel):
    """OpenAI `/v1/completions`: raw prompt text continued as is (no chat template, no markers)."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    prompt: str = Field(min_length=1)
    temperature: float | None = Field(None, ge=0, le=2, strict=True)
    top_p: float | None = Field(None, gt=0, le=1, strict=True)
    max_tokens: PositiveJsonInt | None = None
    seed: SeedInt | None = None
    stream: StrictBool = False
    stop: str | list[str] | None = Field(
        None, description="cut the text before the first of these (not with stream)"
    )

    @model_validator(mode="after")
    def _valid_unicode(self) -> CompletionRequest:
        stops = [self.stop] if isinstance(self.stop, str) else self.stop or []
        for text in [self.model or "", self.prompt, *stops]:
            _valid_text(text)
        return self


def _error(
    status: int, message: str, kind: str = "invalid_request_error", headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "code": status}}
    return JSONResponse(body, status_code=status, headers=headers)


def markers_schema(taxonomy: Taxonomy) -> dict[str, Any]:
    """JSON schema of the `markers` field: every marker a user may set, with exactly the values accepted."""
    properties: dict[str, Any] = {}
    for name, marker in taxonomy.markers.items():
        if not marker.user_settable:
            continue
        prop: dict[str, Any]
        if marker.values:
            prop = {"type": "string", "enum": list(marker.values)}
            if all(v.isdigit() for v in marker.values):  # ordinal "1".."4" may also be sent as numbers
                prop = {"anyOf": [prop, {"type": "integer", "enum": [int(v) for v in marker.values]}]}
        else:
            prop = {"type": "number" if marker.kind == "float" else "integer"}
            bounds = (("minimum", marker.minimum), ("maximum", marker.maximum))
            prop.update({k: v for k, v in bounds if v is not None})
        properties[name] = {**prop, "description": marker.description or name}
    return {"type": "object", "properties": properties, "additionalProperties": False}


def check_markers(markers: Mapping[str, Any], taxonomy: Taxonomy) -> None:
    """Markers of a request must match `markers_schema` exactly (the CLI is lenient: case, numbers as
    text); unknown or not user-settable names are left to `Taxonomy.user_markers`, which names them."""
    for name, value in markers.items():
        if name not in taxonomy or not taxonomy[name].user_settable:
            continue
        marker = taxonomy[name]
        if isinstance(value, bool):
            ok = False
        elif marker.values:
            ok = (isinstance(value, str) and value in marker.values) or (
                isinstance(value, int) and str(value) in marker.values
            )
        elif marker.kind == "integer":
            ok = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        else:
            ok = isinstance(value, int | float)
        if not ok:
            valid = ", ".join(marker.values) if marker.values else f"a JSON {marker.kind}"
            raise MarkerError(f"invalid value {value!r} for marker '{name}'; valid: {valid}")
    taxonomy.user_markers(markers)  # unknown names, settable, ranges


def request_model(taxonomy: Taxonomy) -> type[ChatRequest]:
    """`ChatRequest` whose schema lists the taxonomy's settable markers (values: `check_markers`)."""
    described = {"anyOf": [markers_schema(taxonomy), {"type": "null"}], "default": None, "title": "Markers"}

    def describe(schema: dict[str, Any]) -> None:
        schema.clear()
        schema.update(described)

    markers_field = (MarkerValues | None, Field(None, json_schema_extra=describe))
    return create_model("ChatRequest", __base__=ChatRequest, markers=markers_field)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {"application/json": {}}}
    for code, text in (
        (400, "malformed request, text that is not Unicode, or prompt + max_tokens over the context"),
        (401, "missing or wrong API key"),
        (413, "request body too large"),
        (422, "invalid field or marker"),
        (503, "too many requests in flight (see Retry-After)"),
        (502, "the upstream engine failed or answered garbage (--upstream)"),
        (504, "request time limit exceeded, or the upstream engine too slow"),
    )
}
RESPONSES = {
    200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE if stream"},
    **ERROR_RESPONSES,
}


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes gets 413 (by Content-Length or as it streams in)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        too_big = _error(413, f"request body over {self.limit} bytes", "request_too_large")
        if declared.isdigit() and int(declared) > self.limit:
            await too_big(scope, receive, send)
            return
        received = 0
        answered = False

        async def counted() -> ASGIMessage:
            nonlocal received, answered
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit and not answered:
                answered = True
                await too_big(scope, receive, send)
                return {"type": "http.disconnect"}  # the app stops reading; its answer is dropped
            return message

        async def guarded_send(message: ASGIMessage) -> None:
            if not answered:
                await send(message)

        await self.app(scope, counted, guarded_send)


class Admission:
    """Requests admitted at once (generating or waiting for the model), each with its `Stop`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active: set[Stop] = set()
        self._lock = threading.Lock()

    def enter(self, stop: Stop) -> bool:
        with self._lock:
            if len(self.active) >= self.limit:
                return False
            self.active.add(stop)
            return True

    def leave(self, stop: Stop) -> None:
        with self._lock:
            self.active.discard(stop)

    def stop_all(self) -> None:
        with self._lock:
            for stop in self.active:
                stop.cancel.set()


def create_app(generator: Generator, config: ServeConfig | None = None) -> FastAPI:
    """Build the FastAPI app serving `generator`."""
    config = config or ServeConfig()
    defaults = config.generation or GenerationConfig()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # each admitted request holds a worker thread while the backend works: with fewer threads than
        # admissions (anyio's default is 40), a batching engine would never see them all at once
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = max(limiter.total_tokens, config.max_queue + 8)
        yield

    app = FastAPI(title="treasure", version="1", lifespan=lifespan)
    app.add_middleware(BodyLimit, limit=config.max_body_bytes)
    admission = Admission(config.max_queue)
    app.state.admission = admission
    created = int(time.time())
    context = getattr(generator.backend, "context_length", None)
    chat_request = request_model(generator.taxonomy)
    generator.check(defaults)  # e.g. default marker guidance on a backend without it: refused at start

    def check_key(request: Request) -> None:
        if config.api_key is None:
            return
        header = request.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else ""
        if not secrets.compare_digest(token.encode(), config.api_key.encode()):
            raise HTTPException(401, "invalid or missing API key (send 'Authorization: Bearer KEY')")

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        kind = "authentication_error" if exc.status_code == 401 else "invalid_request_error"
        return _error(exc.status_code, str(exc.detail), kind, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in errors
        )
        # text that is not Unicode, or a conversation not ending with a user turn, is a malformed request
        # (400); a field that breaks the schema is 422
        status = 400 if any(e["type"] in ("invalid_text", "invalid_conversation") for e in errors) else 422
        return _error(status, f"invalid request: {problems}")

    @app.exception_handler(UpstreamError)
    async def _upstream_error(request: Request, exc: UpstreamError) -> JSONResponse:
        return _error(exc.status, str(exc), "upstream_error")

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

    def generation_config(body: ChatRequest | CompletionRequest) -> GenerationConfig:
        requested = getattr(body, "max_completion_tokens", None) or body.max_tokens
        guidance, length_budget = getattr(body, "guidance", None), getattr(body, "length_budget", None)
        return GenerationConfig(
            max_new_tokens=requested or defaults.max_new_tokens,
            temperature=defaults.temperature if body.temperature is None else body.temperature,
            top_p=body.top_p or defaults.top_p,
            top_k=defaults.top_k,
            repetition_penalty=defaults.repetition_penalty,
            seed=defaults.seed if body.seed is None else body.seed,
            batch_size=1,
            guidance=defaults.guidance if guidance is None else guidance,
            length_budget=defaults.length_budget if length_budget is None else length_budget,
        )

    def admit(prompt_tokens: int, max_new_tokens: int) -> tuple[Stop, JSONResponse | None]:
        """A `Stop` for a request that fits the context and the queue, or the refusal (400 or 503)."""
        stop = Stop(deadline=time.monotonic() + config.request_timeout_s)
        if context is not None and prompt_tokens + max_new_tokens > context:
            return stop, _error(
                400,
                f"the prompt has {prompt_tokens} tokens and max_tokens is {max_new_tokens}: "
                f"together over the model's context of {context} tokens",
                "context_length_exceeded",
            )
        if admission.enter(stop):
            return stop, None
        busy = f"server busy ({config.max_queue} requests in flight); retry shortly"
        return stop, _error(503, busy, "server_busy", {"Retry-After": "1"})

    async def complete_guarded(
        request: Request, complete: Any, item: Any, gen_config: GenerationConfig, stop: Stop
    ) -> Any:
        """`complete([item], gen_config, stop)[0]` in a worker thread, stopped if the client goes away;
        leaves the admission."""
        try:
            work = asyncio.ensure_future(anyio.to_thread.run_sync(complete, [item], gen_config, stop))
            while not work.done():
                await asyncio.wait({work}, timeout=0.25)
                if not work.done() and await request.is_disconnected():
                    stop.cancel.set()  # the client is gone: stop generating for it
            return work.result()[0]
        finally:
            admission.leave(stop)

    def timed_out() -> JSONResponse:
        limit = f"generation exceeded the request time limit of {config.request_timeout_s:g} s"
        return _error(504, limit, "timeout")

    async def chat(body: ChatRequest, request: Request) -> Any:
        try:
            mode = resolve_mode(body.treasure_mode, body.markers)
        except MarkerError as exc:  # schema-valid, contradictory: 400
            return _error(400, str(exc))
        if body.markers:
            check_markers(body.markers, generator.taxonomy)
        gen_config = generation_config(body)
        generator.check(gen_config)  # marker guidance on a backend without it: 400 before anything starts
        history = [m.model_dump() for m in body.messages[:-1]]
        prompt = body.messages[-1].content
        # validate now, so a bad marker is a 422 before any streaming starts
        prepared = generator.prepare(prompt, mode, body.markers, body.treasure_strict, history)
        prompt_tokens = generator.backend.count_tokens(prepared.text)
        stop, refused = admit(prompt_tokens, gen_config.max_new_tokens)
        if refused is not None:
            return refused
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        if body.stream:
            pieces = generator.stream_prepared(prepared, gen_config, stop)
            events = _sse(pieces, completion_id, generator.name, stop, admission, config.request_timeout_s)
            return StreamingResponse(events, media_type="text/event-stream")
        completion = await complete_guarded(request, generator.complete, prepared, gen_config, stop)
        if stop.timed_out() and not completion.finished:
            return timed_out()
        result = generator.finish(prepared, completion, gen_config)
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
            "usage": _usage(prompt_tokens, result.n_tokens),
            "treasure": _treasure(result),
        }

    @app.post("/v1/completions", dependencies=[Depends(check_key)], response_model=None, responses=RESPONSES)
    async def completions(body: CompletionRequest, request: Request) -> Any:
        """Continue raw prompt text (what a marker layer in front of this server sends, `--upstream`)."""
        if body.stream and body.stop:
            return _error(400, "stop sequences are supported without stream only")
        gen_config = generation_config(body)
        prompt_tokens = generator.backend.count_tokens(body.prompt)
        if prompt_tokens == 0:  # text the tokenizer has no token for
            return _error(400, "the prompt is empty under this model's tokenizer")
        stop, refused = admit(prompt_tokens, gen_config.max_new_tokens)
        if refused is not None:
            return refused
        completion_id = f"cmpl-{uuid.uuid4().hex}"
        if body.stream:
            pieces = generator.backend.stream(body.prompt, gen_config, stop)
            events = _text_sse(
                pieces, completion_id, generator.name, stop, admission, gen_config, generator.backend
            )
            return StreamingResponse(events, media_type="text/event-stream")
        completion = await complete_guarded(
            request, generator.backend.complete, body.prompt, gen_config, stop
        )
        if stop.timed_out() and not completion.finished:
            return timed_out()
        text, cut = _cut_at_stop(completion.text, body.stop)
        return {
            "id": completion_id,
            "object": "text_completion",
            "created": int(time.time()),
            "model": generator.name,
            "choices": [
                {
                    "index": 0,
                    "text": text,
                    "finish_reason": "stop" if completion.finished or cut else "length",
                }
            ],
            "usage": _usage(prompt_tokens, completion.n_tokens),
        }

    chat.__annotations__["body"] = chat_request  # the schema then lists this taxonomy's markers
    app.post(
        "/v1/chat/completions", dependencies=[Depends(check_key)], response_model=None, responses=RESPONSES
    )(chat)
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


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    total = prompt_tokens + completion_tokens
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": total}


def _cut_at_stop(text: str, stop: str | list[str] | None) -> tuple[str, bool]:
    stops = [stop] if isinstance(stop, str) else [s for s in stop or [] if s]
    cuts = [text.find(s) for s in stops if s and s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


async def _text_sse(
    pieces: Iterator[str],
    completion_id: str,
    model: str,
    stop: Stop,
    admission: Admission,
    gen_config: GenerationConfig,
    backend: Any,
) -> AsyncIterator[str]:
    """SSE events of a raw text completion; the last one carries `finish_reason` and `usage`."""

    def event(text: str, finish: str | None = None, **extra: Any) -> str:
        choice = {"index": 0, "text": text, "finish_reason": finish}
        body = {"id": completion_id, "object": "text_completion", "created": int(time.time()), "model": model}
        return f"data: {json.dumps({**body, 'choices': [choice], **extra}, ensure_ascii=False)}\n\n"

    done, parts = object(), []
    try:
        while (piece := await anyio.to_thread.run_sync(next, pieces, done)) is not done:
            parts.append(piece)
            yield event(piece)
        n_tokens = backend.count_tokens("".join(parts))
        finished = n_tokens < gen_config.max_new_tokens and not stop.requested()
        usage = {"completion_tokens": n_tokens}
        yield event("", "stop" if finished else "length", usage=usage)
        yield "data: [DONE]\n\n"
    finally:
        await _release(pieces, stop, admission)


async def _sse(
    pieces: Iterator[str | Generation],
    completion_id: str,
    model: str,
    stop: Stop,
    admission: Admission,
    timeout_s: float,
) -> AsyncIterator[str]:
    """SSE events of a streamed answer. Leaving early (client gone) stops the generation."""

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

    done = object()
    try:
        yield chunk({"role": "assistant", "content": ""})
        while (item := await _next_or_error(pieces, done)) is not done:
            if isinstance(item, UpstreamError):
                error = {"message": str(item), "type": "upstream_error", "code": item.status}
                yield f"data: {json.dumps({'error': error})}\n\n"
                break
            if isinstance(item, Generation):
                if stop.timed_out() and not item.finished:
                    message = f"generation exceeded the request time limit of {timeout_s:g} s"
                    error = {"message": message, "type": "timeout", "code": 504}
                    yield f"data: {json.dumps({'error': error})}\n\n"
                yield chunk({}, _finish_reason(item), treasure=_treasure(item))
            else:
                yield chunk({"content": item})
        yield "data: [DONE]\n\n"
    finally:
        await _release(pieces, stop, admission)


async def _next_or_error(pieces: Iterator[Any], done: object) -> Any:
    """The next item, `done` at the end, or the `UpstreamError` that ended the stream."""
    try:
        return await anyio.to_thread.run_sync(next, pieces, done)
    except UpstreamError as exc:
        return exc


async def _release(pieces: Iterator[Any], stop: Stop, admission: Admission) -> None:
    """End a streamed request: stop its generation (a no-op when it finished; the model stops when the
    client left mid-stream), close its iterator, give back its admission slot."""
    stop.cancel.set()
    with anyio.CancelScope(shield=True):  # runs even when the response task was cancelled
        await anyio.to_thread.run_sync(_close, pieces)
    admission.leave(stop)


def _close(pieces: Iterator[Any]) -> None:
    close = getattr(pieces, "close", None)
    if close is not None:
        close()


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
