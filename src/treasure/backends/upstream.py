"""The upstream backend: completions from OpenAI-compatible engines (vLLM, llama.cpp's server, SGLang,
TGI, another `treasure serve`) through `POST /v1/completions` with the raw prompt text.

treasure keeps the marker layer (chat template from the local model dir, markers, escaping, answers without
the template); the engine only continues text and batches concurrent requests as it likes, so marker
guidance is refused (`check`) and a word budget only trims the finished answer. Each completion
is streamed from the engine, so a cancelled request (client gone, time limit) closes its connection and the
engine can drop it. Engine trouble becomes `UpstreamError` with an HTTP status for the server to pass on:
502 when the engine is unreachable or answers with an error or garbage, 504 when it is too slow.

Several engines (`url` as a comma list) share the requests: each goes to the live engine with the fewest
requests in flight (`EnginePool`). An engine that fails as a whole (connection refused or reset, no answer
within the timeout, a 5xx) leaves the rotation for `retry_after_s` seconds, and the request is sent again to
another live engine, unless text of it was already streamed out.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from transformers import AutoConfig, AutoTokenizer

from treasure.backends import Completion, GenerationConfig, Stop, refuse_guidance, token_ids
from treasure.errors import TreasureError


class UpstreamError(TreasureError):
    """The engine failed; `status` is what a server should answer (502 or 504). `engine_down`: the engine
    itself failed (unreachable, silent, 5xx), not this request (4xx, garbage), so another may answer it."""

    def __init__(self, status: int, message: str, engine_down: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.engine_down = engine_down


def engine_urls(text: str) -> tuple[str, ...]:
    """The engine base URLs of a comma list ("http://a:8000/v1,http://b:8000/v1"), each checked."""
    urls = tuple(part.strip().rstrip("/") for part in text.split(","))
    for url in urls:
        parsed = httpx.URL(url) if url else None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
            raise TreasureError(
                f"upstream: {url!r} is not an http(s) URL of an engine (e.g. http://127.0.0.1:8001/v1); "
                "several engines are separated by commas"
            )
    if len(set(urls)) < len(urls):
        raise TreasureError(f"upstream: an engine is listed twice in {text!r}")
    return urls


@dataclass(eq=False)
class Engine:
    """One engine: its base URL, requests in flight there, when it was last chosen, and the
    `time.monotonic()` before which it sits out after a failure."""

    url: str
    in_flight: int = 0
    last_chosen: int = 0
    down_until: float = 0.0


class EnginePool:
    """Engines chosen by least outstanding requests (ties: the least recently chosen). A failed engine sits
    out `retry_after_s` seconds, then takes requests again (the next one it gets tells whether it is back)."""

    def __init__(self, urls: tuple[str, ...], retry_after_s: float) -> None:
        self.engines = [Engine(url) for url in urls]
        self.retry_after_s = retry_after_s
        self._turns = itertools.count(1)
        self._lock = threading.Lock()

    def _live(self, tried: set[Engine]) -> list[Engine]:
        now = time.monotonic()
        return [e for e in self.engines if e not in tried and e.down_until <= now]

    def can_retry(self, tried: set[Engine]) -> bool:
        """Whether a live engine not yet `tried` is left."""
        with self._lock:
            return bool(self._live(tried))

    @contextmanager
    def lease(self, tried: set[Engine]) -> Iterator[Engine]:
        """The live engine with the fewest requests in flight, not yet `tried` (added to it); when none is
        live, the one back soonest. Counted in flight until the block ends; an `UpstreamError` with
        `engine_down` takes it out of rotation."""
        with self._lock:
            live = self._live(tried)
            if live:
                engine = min(live, key=lambda e: (e.in_flight, e.last_chosen))
            else:
                engine = min((e for e in self.engines if e not in tried), key=lambda e: e.down_until)
            engine.in_flight += 1
            engine.last_chosen = next(self._turns)
        tried.add(engine)
        try:
            yield engine
        except UpstreamError as exc:
            if exc.engine_down:
                with self._lock:
                    engine.down_until = time.monotonic() + self.retry_after_s
            raise
        finally:
            with self._lock:
                engine.in_flight -= 1


@dataclass
class _Finish:
    n_tokens: int | None
    reason: str | None


class UpstreamBackend:
    """Completions from OpenAI-compatible engines at `url` (their `/v1` bases, comma-separated) for the model
    in `model_dir`; a failed engine sits out `retry_after_s` seconds."""

    def __init__(
        self,
        model_dir: str | Path,
        url: str,
        api_key: str | None = None,
        model: str | None = None,
        timeout_s: float = 60.0,
        retry_after_s: float = 5.0,
    ) -> None:
        path = Path(model_dir)
        self.pool = EnginePool(engine_urls(url), retry_after_s)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        config = AutoConfig.from_pretrained(path)
        self.context_length: int | None = getattr(config, "max_position_embeddings", None)
        self.model = model or path.name
        self.timeout_s = timeout_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0))
        # no pool limit: the server's admission bounds the requests in flight
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        self._client = httpx.Client(headers=headers, timeout=timeout, limits=limits)

    def _body(self, text: str, config: GenerationConfig) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": text,
            "max_tokens": config.max_new_tokens,
            "temperature": config.temperature,
            "seed": config.seed,
            "stream": True,
        }
        if config.temperature > 0:
            body["top_p"] = config.top_p
        return body

    def _pieces(
        self, engine: Engine, text: str, config: GenerationConfig, stop: Stop | None
    ) -> Iterator[str | _Finish]:
        """Text pieces as `engine` streams them, then a `_Finish`; closing early closes the connection."""
        where = f"upstream {engine.url}/completions"
        try:
            with self._client.stream(
                "POST", f"{engine.url}/completions", json=self._body(text, config)
            ) as reply:
                if reply.status_code != 200:
                    reply.read()
                    message = f"{where} answered {reply.status_code}: {reply.text[:300]}"
                    raise UpstreamError(502, message, engine_down=reply.status_code >= 500)
                finish = _Finish(None, None)
                for line in reply.iter_lines():
                    if stop is not None and stop.requested():
                        return
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    event = _event(data, where)
                    choice = event["choices"][0]
                    if choice.get("text"):
                        yield choice["text"]
                    finish.reason = choice.get("finish_reason") or finish.reason
                    usage = event.get("usage") or {}
                    finish.n_tokens = usage.get("completion_tokens", finish.n_tokens)
                yield finish
        except httpx.TimeoutException:
            raise UpstreamError(504, f"{where}: no answer within {self.timeout_s:g} s", True) from None
        except httpx.HTTPError as exc:
            raise UpstreamError(502, f"{where} unreachable: {type(exc).__name__}: {exc}", True) from None

    def _may_retry(self, error: UpstreamError, tried: set[Engine], stop: Stop | None) -> bool:
        """Whether a request that failed with `error` goes to another engine."""
        wanted = stop is None or not stop.requested()
        return error.engine_down and wanted and self.pool.can_retry(tried)

    def _complete_one(self, text: str, config: GenerationConfig, stop: Stop | None) -> Completion:
        """The whole completion from one engine; a failed engine's partial text is dropped and the
        request sent to the next."""
        tried: set[Engine] = set()
        while True:
            try:
                with self.pool.lease(tried) as engine:
                    return self._collect(self._pieces(engine, text, config, stop))
            except UpstreamError as exc:
                if not self._may_retry(exc, tried, stop):
                    raise

    def _collect(self, pieces: Iterator[str | _Finish]) -> Completion:
        parts: list[str] = []
        finish = _Finish(None, None)
        for item in pieces:
            if isinstance(item, _Finish):
                finish = item
            else:
                parts.append(item)
        answer = "".join(parts)
        n_tokens = finish.n_tokens if finish.n_tokens is not None else self.count_tokens(answer)
        return Completion(text=answer, n_tokens=n_tokens, finished=finish.reason == "stop")

    def complete(
        self, texts: list[str], config: GenerationConfig, stop: Stop | None = None
    ) -> list[Completion]:
        """Complete every prompt text, all at once (the engine batches them)."""
        if len(texts) == 1:
            return [self._complete_one(texts[0], config, stop)]
        with ThreadPoolExecutor(max_workers=min(len(texts), 32)) as pool:
            return list(pool.map(lambda text: self._complete_one(text, config, stop), texts))

    def stream(self, text: str, config: GenerationConfig, stop: Stop | None = None) -> Iterator[str]:
        """Yield the completion of one prompt text as an engine streams it; a failed engine's request goes
        to the next one only while no text of it was yielded."""
        tried: set[Engine] = set()
        while True:
            sent = False
            try:
                with self.pool.lease(tried) as engine:
                    for item in self._pieces(engine, text, config, stop):
                        if isinstance(item, str):
                            sent = True
                            yield item
                return
            except UpstreamError as exc:
                if sent or not self._may_retry(exc, tried, stop):
                    raise

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` under the local copy of the model's tokenizer."""
        return len(token_ids(self.tokenizer, text))

    @staticmethod
    def check(config: GenerationConfig) -> None:
        """Marker guidance is refused (the engine only continues text); a word budget is applied by
        trimming the finished answer (`treasure.budget`)."""
        refuse_guidance(config, "an upstream engine")


def _event(data: str, where: str) -> dict[str, Any]:
    try:
        event = json.loads(data)
        if not isinstance(event["choices"][0], dict):
            raise TypeError
    except (ValueError, KeyError, IndexError, TypeError):
        raise UpstreamError(
            502, f"{where} sent something that is not a completion event: {data[:200]!r}"
        ) from None
    return event
