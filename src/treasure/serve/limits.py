"""Serving limits: the body size, the admission (requests in flight and a bounded waiting line), the
model's context, and the time limit of an admitted request."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as ASGIMessage

from treasure.backends import Stop
from treasure.generate import GenerationConfig
from treasure.serve.protocol import error_response

TRANSFORMERS_IN_FLIGHT = 16  # the transformers backend generates one batch at a time
ENGINE_IN_FLIGHT = 256  # per batching engine (vLLM schedules up to 256 sequences by default)


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes gets 413 (by Content-Length or as it streams in)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        too_big = error_response(413, f"request body over {self.limit} bytes", "request_too_large")
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
    """Requests admitted at once (generating or waiting for the model), each with its `Stop`; beyond
    `limit`, up to `waiting` more wait for a slot, first come first served, for at most `wait_s` seconds.

    `enter` and `leave` run on the server's event loop; `stop_all` may run on any thread."""

    def __init__(self, limit: int, waiting: int = 0, wait_s: float = 0.0) -> None:
        self.limit, self.waiting, self.wait_s = limit, waiting, wait_s
        self.active: set[Stop] = set()
        self._slots = anyio.Semaphore(limit)
        self._lock = threading.Lock()

    async def enter(self, stop: Stop) -> bool:
        """Admit `stop`'s request, at once or after waiting for a slot; False when the waiting line is full
        or the wait lasted `wait_s`."""
        try:
            self._slots.acquire_nowait()
        except anyio.WouldBlock:
            if self._slots.statistics().tasks_waiting >= self.waiting:
                return False
            with anyio.move_on_after(self.wait_s) as waited:
                await self._slots.acquire()
            if waited.cancelled_caught:
                return False
        with self._lock:
            self.active.add(stop)
        return True

    def leave(self, stop: Stop) -> None:
        with self._lock:
            if stop not in self.active:
                return
            self.active.discard(stop)
        self._slots.release()

    def stop_all(self) -> None:
        with self._lock:
            for stop in self.active:
                stop.cancel.set()


@asynccontextmanager
async def admission_threads(app: FastAPI) -> AsyncIterator[None]:
    """Lifespan: room in the worker-thread pool for every request `app.state.admission` admits."""
    # each admitted request holds a worker thread while the backend works: with fewer threads than
    # admissions (anyio's default is 40), a batching engine would never see them all at once
    limiter = anyio.to_thread.current_default_thread_limiter()
    limiter.total_tokens = max(limiter.total_tokens, app.state.admission.limit + 8)
    yield


class Limits:
    """What one request may take: prompt + `max_tokens` within the model's `context`, a slot in the
    `admission`, and `timeout_s` from admission to its last token; a client that leaves stops its work."""

    def __init__(self, admission: Admission, context: int | None, timeout_s: float) -> None:
        self.admission, self.context, self.timeout_s = admission, context, timeout_s

    async def admit(self, prompt_tokens: int, max_new_tokens: int) -> tuple[Stop, JSONResponse | None]:
        """A `Stop` for a request that fits the context and got a slot (maybe after waiting), or the refusal
        (400 or 503). The time limit counts from admission."""
        if self.context is not None and prompt_tokens + max_new_tokens > self.context:
            return Stop(), error_response(
                400,
                f"the prompt has {prompt_tokens} tokens and max_tokens is {max_new_tokens}: "
                f"together over the model's context of {self.context} tokens",
                "context_length_exceeded",
            )
        stop = Stop()
        if await self.admission.enter(stop):
            stop.deadline = time.monotonic() + self.timeout_s
            return stop, None
        busy = f"server busy ({self.admission.limit} requests in flight, {self.admission.waiting} waiting)"
        return stop, error_response(503, f"{busy}; retry shortly", "server_busy", {"Retry-After": "1"})

    async def run(
        self,
        request: Request,
        complete: Callable[[list[Any], GenerationConfig, Stop], list[Any]],
        item: Any,
        config: GenerationConfig,
        stop: Stop,
    ) -> Any:
        """`complete([item], config, stop)[0]` in a worker thread, stopped if the client goes away; leaves
        the admission."""
        try:
            work = asyncio.ensure_future(anyio.to_thread.run_sync(complete, [item], config, stop))
            while not work.done():
                await asyncio.wait({work}, timeout=0.25)
                if not work.done() and await request.is_disconnected():
                    stop.cancel.set()  # the client is gone: stop generating for it
            return work.result()[0]
        finally:
            self.admission.leave(stop)

    def exceeded(self) -> str:
        """What a request past its time limit is told."""
        return f"generation exceeded the request time limit of {self.timeout_s:g} s"

    def timed_out(self) -> JSONResponse:
        """The 504 of a request past its time limit."""
        return error_response(504, self.exceeded(), "timeout")
