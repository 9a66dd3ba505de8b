"""The upstream backend: completions from any OpenAI-compatible engine (vLLM, llama.cpp's server, SGLang,
TGI, another `treasure serve`) through `POST /v1/completions` with the raw prompt text.

treasure keeps the marker layer (chat template from the local model dir, markers, escaping, answers without
the template); the engine only continues text and batches concurrent requests as it likes, so marker
guidance is refused (`check`) and a word budget only trims the finished answer. Each completion
is streamed from the engine, so a cancelled request (client gone, time limit) closes its connection and the
engine can drop it. Engine trouble becomes `UpstreamError` with an HTTP status for the server to pass on:
502 when the engine is unreachable or answers with an error or garbage, 504 when it is too slow.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from transformers import AutoConfig, AutoTokenizer

from treasure.backends import Completion, GenerationConfig, Stop, refuse_guidance, token_ids
from treasure.errors import TreasureError


class UpstreamError(TreasureError):
    """The engine failed; `status` is what a server should answer (502 or 504)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Finish:
    n_tokens: int | None
    reason: str | None


class UpstreamBackend:
    """Completions from an OpenAI-compatible engine at `url` (its `/v1` base) for the model in `model_dir`."""

    def __init__(
        self,
        model_dir: str | Path,
        url: str,
        api_key: str | None = None,
        model: str | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        path = Path(model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        config = AutoConfig.from_pretrained(path)
        self.context_length: int | None = getattr(config, "max_position_embeddings", None)
        self.url = url.rstrip("/")
        self.model = model or path.name
        self.timeout_s = timeout_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0))
        self._client = httpx.Client(headers=headers, timeout=timeout)

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

    def _pieces(self, text: str, config: GenerationConfig, stop: Stop | None) -> Iterator[str | _Finish]:
        """Text pieces as the engine streams them, then a `_Finish`; closing early closes the connection."""
        where = f"upstream {self.url}/completions"
        try:
            with self._client.stream(
                "POST", f"{self.url}/completions", json=self._body(text, config)
            ) as reply:
                if reply.status_code != 200:
                    reply.read()
                    raise UpstreamError(502, f"{where} answered {reply.status_code}: {reply.text[:300]}")
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
            raise UpstreamError(504, f"{where}: no answer within {self.timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise UpstreamError(502, f"{where} unreachable: {type(exc).__name__}: {exc}") from None

    def _complete_one(self, text: str, config: GenerationConfig, stop: Stop | None) -> Completion:
        parts: list[str] = []
        finish = _Finish(None, None)
        for item in self._pieces(text, config, stop):
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
        """Yield the completion of one prompt text as the engine streams it."""
        for item in self._pieces(text, config, stop):
            if isinstance(item, str):
                yield item

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
