"""One client for OpenAI-compatible chat endpoints: disk cache, retries with backoff, counters, structured
output with a fallback to plain prompting.

Used by the annotate LLM tagger and the evaluate pairwise judge. The API key is read from the environment
variable named by `api_key_env` (`none` when unset, which local servers accept), never passed as a value.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

import openai

from treasure.errors import TreasureError
from treasure.io import atomic_write_text
from treasure.knobs import knob

COUNTERS = (
    "requests",
    "cached",
    "retries",
    "failures",
    "prompt_tokens",
    "completion_tokens",
    "structured_fallbacks",
)
Structured = Literal["auto", "json_schema", "off"]
STRUCTURED_MODES: tuple[str, ...] = get_args(Structured)


def check_structured(mode: str) -> None:
    """Raise a `TreasureError` naming the valid modes when `mode` is not one."""
    if mode not in STRUCTURED_MODES:
        raise TreasureError(f"structured output must be one of {', '.join(STRUCTURED_MODES)}, got {mode!r}")


def structured_help(label: str, schema_of: str) -> str:
    """Help of a config's `structured` field (`label`: its first words, `schema_of`: what the JSON schema
    allows); the field is validated with `check_structured`."""
    return (
        f"{label}: auto (a JSON schema of {schema_of} where the endpoint accepts it, else plain "
        "prompting), json_schema (always) or off."
    )


def json_schema_format(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI `response_format` asking for JSON that follows `schema` (strict)."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def enum_object_schema(fields: dict[str, list[str]]) -> dict[str, Any]:
    """JSON schema of an object with one string enum per field, all required, nothing else."""
    return {
        "type": "object",
        "properties": {name: {"type": "string", "enum": values} for name, values in fields.items()},
        "required": list(fields),
        "additionalProperties": False,
    }


# the knobs of the two settings a config may make required (redeclared without a default, e.g. `LLMConfig`)
ENDPOINT_KNOB = knob("OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
MODEL_KNOB = knob("Model name the endpoint serves.")


@dataclass(frozen=True)
class EndpointConfig:
    """An OpenAI-compatible endpoint, the one definition for every config that talks to one (the LLM tagger,
    the pairwise judge): base URL, model, the environment variable holding the key, and per request the
    HTTP timeout and retries (connection errors, 429, 5xx; `backoff_s × 2^n` seconds before retry n)."""

    endpoint: str | None = field(default=None, metadata=ENDPOINT_KNOB)
    model: str | None = field(default=None, metadata=MODEL_KNOB)
    api_key_env: str = field(
        default="OPENAI_API_KEY", metadata=knob("Environment variable holding the endpoint's API key.")
    )
    timeout_s: float = field(default=60.0, metadata=knob("HTTP timeout per request, in seconds."))
    http_retries: int = field(
        default=3, metadata=knob("HTTP retries per request (connection errors, 429, 5xx), with backoff.")
    )
    backoff_s: float = 0.5

    def require_endpoint(self, who: str, prefix: str = "") -> None:
        """A `TreasureError` naming `who` and its settings (`prefix`: endpoint, model) if one is missing."""
        if not self.endpoint or not self.model:
            raise TreasureError(f"{who} needs `{prefix}endpoint` and `{prefix}model`")

    def client(self, cache_dir: Path | None = None, structured: Structured = "auto") -> ChatClient:
        """The one client (`ChatClient`) for this endpoint."""
        settings = {f.name: getattr(self, f.name) for f in fields(EndpointConfig)}
        return ChatClient(ClientConfig(**settings, cache_dir=cache_dir, structured=structured))


@dataclass(frozen=True)
class ClientConfig(EndpointConfig):
    """An endpoint (endpoint and model required) and what the client does with replies: cached under
    `cache_dir` when set.

    `structured`: what becomes of a `response_format` given to `chat`. `auto` sends it until the endpoint
    rejects it (400/422 while the same request without it succeeds), then sends none for the rest of the
    client's life (counted once in `structured_fallbacks`); `json_schema` always sends it; `off` never does.
    """

    cache_dir: Path | None = None
    structured: Structured = "auto"

    def __post_init__(self) -> None:
        self.require_endpoint("an OpenAI-compatible client")
        check_structured(self.structured)


def _retryable(exc: openai.APIError) -> bool:
    if isinstance(exc, openai.APIConnectionError):  # timeouts included
        return True
    return isinstance(exc, openai.APIStatusError) and (exc.status_code == 429 or exc.status_code >= 500)


class ChatClient:
    """Thread-safe chat completions with running counters (`counters()`).

    `requests` counts HTTP requests sent (retries included), `retries` the retried ones, `failures` the
    calls that raised; `cached` the replies read from disk; `structured_fallbacks` is 1 once `auto` gave up
    structured output.
    """

    def __init__(self, config: ClientConfig):
        self.config = config
        self._client = openai.OpenAI(
            base_url=config.endpoint,
            api_key=os.environ.get(config.api_key_env) or "none",
            max_retries=0,  # retried here, so that every request is counted
            timeout=config.timeout_s,
        )
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._structured = config.structured != "off"

    def counters(self) -> dict[str, int]:
        """A snapshot of the running totals."""
        with self._lock:
            return dict(self._counts)

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for key, delta in deltas.items():
                self._counts[key] += delta

    def _cache_path(
        self,
        messages: list[dict[str, str]],
        max_tokens: int,
        temperature: float,
        attempt: int,
        response_format: dict[str, Any] | None,
    ) -> Path | None:
        """Cache file of one request (None without a cache dir); a structured request has its own key
        (plain requests keep the key they had before structured output existed)."""
        if self.config.cache_dir is None:
            return None
        parts: list[Any] = [self.config.model, messages, attempt, temperature, max_tokens]
        key = json.dumps([*parts, response_format] if response_format is not None else parts)
        return Path(self.config.cache_dir) / f"{hashlib.sha256(key.encode()).hexdigest()}.json"

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        attempt: int = 0,
        response_format: dict[str, Any] | None = None,
    ) -> str:
        """Reply text to `messages`, from the cache when there. `attempt` keeps the replies of repeated
        asks (after an unusable answer) apart in the cache; `response_format` is sent as `config.structured`
        says. Raises the last error once retries are spent."""
        if not self._structured:
            response_format = None
        path = self._cache_path(messages, max_tokens, temperature, attempt, response_format)
        if path is not None and path.is_file():
            self._count(cached=1)
            return json.loads(path.read_text(encoding="utf-8"))["content"]
        try:
            content = self._complete(messages, max_tokens, temperature, response_format)
        except (openai.BadRequestError, openai.UnprocessableEntityError):
            if response_format is None or self.config.structured != "auto":
                self._count(failures=1)
                raise
            return self._fall_back(messages, max_tokens, temperature, attempt)
        except openai.APIError:
            self._count(failures=1)
            raise
        if path is not None:
            atomic_write_text(path, json.dumps({"model": self.config.model, "content": content}))
        return content

    def _fall_back(
        self, messages: list[dict[str, str]], max_tokens: int, temperature: float, attempt: int
    ) -> str:
        """The plain reply after a rejected structured request; when it succeeds the rejection was about
        `response_format`, so structured output stops here (counted once). Raises when it fails too."""
        content = self.chat(messages, max_tokens=max_tokens, temperature=temperature, attempt=attempt)
        with self._lock:
            if self._structured:
                self._structured = False
                self._counts["structured_fallbacks"] += 1
        return content

    def _complete(
        self,
        messages: list[dict[str, str]],
        max_tokens: int,
        temperature: float,
        response_format: dict[str, Any] | None,
    ) -> str:
        """One chat completion, retrying connection errors, 429 and 5xx with backoff."""
        extra = {} if response_format is None else {"response_format": response_format}
        retries = 0
        while True:
            self._count(requests=1)
            try:
                reply = self._client.chat.completions.create(
                    model=self.config.model,
                    messages=messages,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    **extra,
                )
                break
            except openai.APIError as exc:
                if retries == self.config.http_retries or not _retryable(exc):
                    raise
            time.sleep(self.config.backoff_s * 2**retries)
            retries += 1
            self._count(retries=1)
        usage = reply.usage
        self._count(
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
        )
        return reply.choices[0].message.content or ""
