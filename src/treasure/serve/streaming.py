"""Server-sent events: a chat answer (never its template block) or raw completion text, piece by piece. A
stream that ends, early or not, stops its generation and gives back its admission slot."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio

from treasure.backends import Backend, Stop
from treasure.backends.upstream import UpstreamError
from treasure.generate import Generation, GenerationConfig
from treasure.serve.limits import Limits
from treasure.serve.protocol import envelope, finish_reason, treasure_fields

DONE = "data: [DONE]\n\n"


async def chat_events(
    pieces: Iterator[str | Generation], completion_id: str, model: str, stop: Stop, limits: Limits
) -> AsyncIterator[str]:
    """SSE events of a streamed answer. Leaving early (client gone) stops the generation."""

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        choice = {"delta": delta, "finish_reason": finish}
        return _data(envelope(completion_id, "chat.completion.chunk", model, choice, **extra))

    done = object()
    try:
        yield chunk({"role": "assistant", "content": ""})
        while (item := await _next_or_error(pieces, done)) is not done:
            if isinstance(item, UpstreamError):
                yield _error(str(item), "upstream_error", item.status)
                break
            if isinstance(item, Generation):
                if stop.timed_out() and not item.finished:
                    yield _error(limits.exceeded(), "timeout", 504)
                yield chunk({}, finish_reason(item), treasure=treasure_fields(item))
            else:
                yield chunk({"content": item})
        yield DONE
    finally:
        await _release(pieces, stop, limits)


async def text_events(
    pieces: Iterator[str],
    completion_id: str,
    model: str,
    stop: Stop,
    limits: Limits,
    config: GenerationConfig,
    backend: Backend,
) -> AsyncIterator[str]:
    """SSE events of a raw text completion; the last one carries `finish_reason` and `usage`."""

    def event(text: str, finish: str | None = None, **extra: Any) -> str:
        choice = {"text": text, "finish_reason": finish}
        return _data(envelope(completion_id, "text_completion", model, choice, **extra))

    done, parts = object(), []
    try:
        while (piece := await anyio.to_thread.run_sync(next, pieces, done)) is not done:
            parts.append(piece)
            yield event(piece)
        n_tokens = backend.count_tokens("".join(parts))
        finished = n_tokens < config.max_new_tokens and not stop.requested()
        yield event("", "stop" if finished else "length", usage={"completion_tokens": n_tokens})
        yield DONE
    finally:
        await _release(pieces, stop, limits)


def _data(body: dict[str, Any]) -> str:
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


def _error(message: str, kind: str, code: int) -> str:
    """The event that ends a stream that failed after its 200 was sent."""
    return f"data: {json.dumps({'error': {'message': message, 'type': kind, 'code': code}})}\n\n"


async def _next_or_error(pieces: Iterator[Any], done: object) -> Any:
    """The next item, `done` at the end, or the `UpstreamError` that ended the stream."""
    try:
        return await anyio.to_thread.run_sync(next, pieces, done)
    except UpstreamError as exc:
        return exc


async def _release(pieces: Iterator[Any], stop: Stop, limits: Limits) -> None:
    """End a streamed request: stop its generation (a no-op when it finished; the model stops when the
    client left mid-stream), close its iterator, give back its admission slot."""
    stop.cancel.set()
    with anyio.CancelScope(shield=True):  # runs even when the response task was cancelled
        await anyio.to_thread.run_sync(_close, pieces)
    limits.admission.leave(stop)


def _close(pieces: Iterator[Any]) -> None:
    close = getattr(pieces, "close", None)
    if close is not None:
        close()
