"""One client for OpenAI-compatible chat endpoints: disk cache, retries with backoff, counters.

Used by the annotate LLM tagger and the evaluate pairwise judge. The API key is read from the environment
variable named by `api_key_env` (`none` when unset, which local servers accept), never passed as a value.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import openai

from treasure.io import atomic_write_text

COUNTERS = ("requests", "cached", "retries", "failures", "prompt_tokens", "completion_tokens")


@dataclass(frozen=True)
class ClientConfig:
    """Endpoint, model and limits. A connection error, 429 or 5xx is retried up to `max_retries` times,
    sleeping `backoff_s × 2^n` before retry n; replies are cached under `cache_dir` when set."""

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 60.0
    max_retries: int = 3
    backoff_s: float = 0.5
    cache_dir: Path | None = None


def _retryable(exc: openai.APIError) -> bool:
    if isinstance(exc, openai.APIConnectionError):  # timeouts included
        return True
    return isinstance(exc, openai.APIStatusError) and (exc.status_code == 429 or exc.status_code >= 500)


class ChatClient:
    """Thread-safe chat completions with running counters (`counters()`).

    `requests` counts HTTP requests sent (retries included), `retries` the retried ones, `failures` the
    calls that raised; `cached` the replies read from disk.
    """

    def __init__(self, config: ClientConfig):
        self.config = config
        self._client = openai.OpenAI(
            base_url=config.base_url,
            api_key=os.environ.get(config.api_key_env) or "none",
            max_retries=0,  # retried here, so that every request is counted
            timeout=config.timeout_s,
        )
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(COUNTERS, 0)

    def counters(self) -> dict[str, int]:
        """A snapshot of the running totals."""
        with self._lock:
            return dict(self._counts)

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for key, delta in deltas.items():
                self._counts[key] += delta

    def _cache_path(
        self, messages: list[dict[str, str]], max_tokens: int, temperature: float, attempt: int
    ) -> Path | None:
        """Cache file of one request (None without a cache dir)."""
        if self.config.cache_dir is None:
            return None
        key = json.dumps([self.config.model, messages, attempt, temperature, max_tokens])
        return Path(self.config.cache_dir) / f"{hashlib.sha256(key.encode()).hexdigest()}.json"

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        attempt: int = 0,
    ) -> str:
        """Reply text to `messages`, from the cache when there. `attempt` keeps the replies of repeated
        asks (after an unusable answer) apart in the cache. Raises the last error once retries are spent."""
        path = self._cache_path(messages, max_tokens, temperature, attempt)
        if path is not None and path.is_file():
            self._count(cached=1)
            return json.loads(path.read_text(encoding="utf-8"))["content"]
        retries = 0
        while True:
            self._count(requests=1)
            try:
                reply = self._client.chat.completions.create(
                    model=self.config.model, messages=messages, max_tokens=max_tokens, temperature=temperature
                )
                break
            except openai.APIError as exc:
                if retries == self.config.max_retries or not _retryable(exc):
                    self._count(failures=1)
                    raise
            time.sleep(self.config.backoff_s * 2**retries)
            retries += 1
            self._count(retries=1)
        usage = reply.usage
        self._count(
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
        )
        content = reply.choices[0].message.content or ""
        if path is not None:
            atomic_write_text(path, json.dumps({"model": self.config.model, "content": content}))
        return content
