"""The endpoints over a `Generator`. Chat and raw completions share one path (`Handler.handle`: validate,
admit, then answer whole or stream); they differ only in their prompt, their backend call and their choice."""

from __future__ import annotations

import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

from treasure.backends import Completion, Stop
from treasure.errors import MarkerError
from treasure.generate import GenerationConfig, Generator, Prepared, resolve_mode
from treasure.serve.limits import Limits
from treasure.serve.protocol import (
    ChatRequest,
    CompletionRequest,
    check_markers,
    envelope,
    error_response,
    finish_reason,
    request_model,
    treasure_fields,
    usage,
)
from treasure.serve.streaming import chat_events, text_events


class ModelsHandler:
    """`/health` and `/v1/models`: the one model served."""

    def __init__(self, generator: Generator) -> None:
        self.generator, self.created = generator, int(time.time())

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "model": self.generator.name, "marked": self.generator.marked}

    def models(self) -> dict[str, Any]:
        card = {"id": self.generator.name, "object": "model", "created": self.created, "owned_by": "treasure"}
        return {"object": "list", "data": [card]}


@dataclass
class Job:
    """A validated request: what the backend completes, its prompt's tokens and its decoding options."""

    item: Prepared | str  # a chat's prepared prompt, or raw prompt text
    prompt_tokens: int
    config: GenerationConfig


class Handler(ABC):
    """One completion endpoint: `path`, `name` (its route's name), `description` (its OpenAPI text),
    `kind` (the answer's `object`), `id_prefix`; the subclass's hooks make its `Job`, complete it, stream
    it, and shape its choice."""

    path: str
    name: str
    description: str | None = None
    kind: str
    id_prefix: str
    request_type: type[BaseModel]

    def __init__(self, generator: Generator, limits: Limits, defaults: GenerationConfig) -> None:
        self.generator, self.limits, self.defaults = generator, limits, defaults

    def route(self) -> Callable[[Any, Request], Awaitable[Any]]:
        """The FastAPI endpoint; its body type gives the OpenAPI schema, its name and docstring the rest."""

        async def endpoint(body: Any, request: Request) -> Any:
            return await self.handle(body, request)

        endpoint.__annotations__["body"] = self.request_type
        endpoint.__name__, endpoint.__doc__ = self.name, self.description
        return endpoint

    async def handle(self, body: Any, request: Request) -> Any:
        """Validate, admit, then answer whole or as server-sent events."""
        job = self.prepare(body)
        if isinstance(job, JSONResponse):
            return job
        stop, refused = await self.limits.admit(job.prompt_tokens, job.config.max_new_tokens)
        if refused is not None:
            return refused
        completion_id = f"{self.id_prefix}-{uuid.uuid4().hex}"
        if body.stream:
            return StreamingResponse(self.events(job, completion_id, stop), media_type="text/event-stream")
        completion = await self.limits.run(request, self.complete, job.item, job.config, stop)
        if stop.timed_out() and not completion.finished:
            return self.limits.timed_out()
        choice, extra = self.choice(body, job, completion)
        answer_usage = usage(job.prompt_tokens, completion.n_tokens)
        return envelope(completion_id, self.kind, self.generator.name, choice, usage=answer_usage, **extra)

    def generation_config(self, body: Any) -> GenerationConfig:
        """The request's decoding options over the server's defaults."""
        requested = getattr(body, "max_completion_tokens", None) or body.max_tokens
        guidance, length_budget = getattr(body, "guidance", None), getattr(body, "length_budget", None)
        defaults = self.defaults
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

    @abstractmethod
    def prepare(self, body: Any) -> Job | JSONResponse:
        """The request as a `Job`, or its refusal before it takes a slot."""

    @abstractmethod
    def complete(self, items: list[Any], config: GenerationConfig, stop: Stop) -> list[Completion]:
        """The backend's completions of `items` (one batch)."""

    @abstractmethod
    def events(self, job: Job, completion_id: str, stop: Stop) -> AsyncIterator[str]:
        """The server-sent events of a streamed answer."""

    @abstractmethod
    def choice(self, body: Any, job: Job, completion: Completion) -> tuple[dict[str, Any], dict[str, Any]]:
        """The answer's choice, and the fields that follow `usage` in the answer."""


class CompletionHandler(Handler):
    """`/v1/completions`: raw prompt text continued as is (no chat template, no markers)."""

    path, name, kind, id_prefix = "/v1/completions", "completions", "text_completion", "cmpl"
    description = (
        "Continue raw prompt text (what a marker layer in front of this server sends, `--upstream`)."
    )
    request_type = CompletionRequest

    def prepare(self, body: CompletionRequest) -> Job | JSONResponse:
        if body.stream and body.stop:
            return error_response(400, "stop sequences are supported without stream only")
        config = self.generation_config(body)
        prompt_tokens = self.generator.backend.count_tokens(body.prompt)
        if prompt_tokens == 0:  # text the tokenizer has no token for
            return error_response(400, "the prompt is empty under this model's tokenizer")
        return Job(body.prompt, prompt_tokens, config)

    def complete(self, items: list[Any], config: GenerationConfig, stop: Stop) -> list[Completion]:
        return self.generator.backend.complete(items, config, stop)

    def events(self, job: Job, completion_id: str, stop: Stop) -> AsyncIterator[str]:
        backend = self.generator.backend
        pieces = backend.stream(job.item, job.config, stop)
        return text_events(pieces, completion_id, self.generator.name, stop, self.limits, job.config, backend)

    def choice(
        self, body: CompletionRequest, job: Job, completion: Completion
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        text, cut = _cut_at_stop(completion.text, body.stop)
        return {"text": text, "finish_reason": "stop" if completion.finished or cut else "length"}, {}


class ChatHandler(Handler):
    """`/v1/chat/completions`: the chat template and the markers; the answer without its template block,
    the markers in a `treasure` object."""

    path, name, kind, id_prefix = "/v1/chat/completions", "chat", "chat.completion", "chatcmpl"

    def __init__(self, generator: Generator, limits: Limits, defaults: GenerationConfig) -> None:
        super().__init__(generator, limits, defaults)
        self.request_type = request_model(generator.taxonomy)  # the schema lists this taxonomy's markers

    def prepare(self, body: ChatRequest) -> Job | JSONResponse:
        try:
            mode = resolve_mode(body.treasure_mode, body.markers)
        except MarkerError as exc:  # schema-valid, contradictory: 400
            return error_response(400, str(exc))
        if body.markers:
            check_markers(body.markers, self.generator.taxonomy)
        config = self.generation_config(body)
        self.generator.check(config)  # marker guidance on a backend without it: 400 before anything starts
        history = [m.model_dump() for m in body.messages[:-1]]
        prompt = body.messages[-1].content
        # validate now, so a bad marker is a 422 before any streaming starts
        prepared = self.generator.prepare(prompt, mode, body.markers, body.treasure_strict, history)
        return Job(prepared, self.generator.backend.count_tokens(prepared.text), config)

    def complete(self, items: list[Any], config: GenerationConfig, stop: Stop) -> list[Completion]:
        return self.generator.complete(items, config, stop)

    def events(self, job: Job, completion_id: str, stop: Stop) -> AsyncIterator[str]:
        pieces = self.generator.stream_prepared(job.item, job.config, stop)
        return chat_events(pieces, completion_id, self.generator.name, stop, self.limits)

    def choice(
        self, body: ChatRequest, job: Job, completion: Completion
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        result = self.generator.finish(job.item, completion, job.config)
        message = {"role": "assistant", "content": result.response}
        choice = {"message": message, "finish_reason": finish_reason(result)}
        return choice, {"treasure": treasure_fields(result)}


def _cut_at_stop(text: str, stop: str | list[str] | None) -> tuple[str, bool]:
    """`text` up to the first stop sequence in it, and whether one was found."""
    stops = [stop] if isinstance(stop, str) else [s for s in stop or [] if s]
    cuts = [text.find(s) for s in stops if s and s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)
