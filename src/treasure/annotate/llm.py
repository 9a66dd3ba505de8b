"""LLM tagger: task, domain, format and style from any OpenAI-compatible chat endpoint (official client).

Prompt in the paper's style: class definitions, an `Unspecified` fallback, few-shot examples, a JSON
answer. Where the endpoint supports it the answer is constrained by a JSON schema (one enum per marker:
the taxonomy's values, plus `Unspecified`); see `LLMConfig.structured`. Answers are validated against the
taxonomy either way; an invalid one is retried (with backoff) and, when every attempt fails, the row's tags
stay null and are counted (never a silent default). Requests, HTTP retries, the disk cache, the structured
output fallback and the API key (from an env var) are `treasure.openai_client`'s.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from treasure.annotate.base import Batch, text_of
from treasure.annotate.classifier import resource_path
from treasure.errors import MarkerError
from treasure.knobs import knob
from treasure.openai_client import (
    ENDPOINT_KNOB,
    MODEL_KNOB,
    EndpointConfig,
    Structured,
    check_structured,
    enum_object_schema,
    json_schema_format,
    structured_help,
)
from treasure.taxonomy import Taxonomy
from treasure.template import escape

UNSPECIFIED = "Unspecified"
JSON_RE = re.compile(r"\{.*?\}", re.S)


@dataclass(frozen=True)
class LLMConfig(EndpointConfig):
    """The tagger's endpoint (`EndpointConfig`: URL, model, key variable, timeout, HTTP retries; endpoint and
    model required) and what it asks: the markers, requests in flight, tries per row."""

    endpoint: str = field(metadata=ENDPOINT_KNOB)
    model: str = field(metadata=MODEL_KNOB)
    markers: tuple[str, ...] = field(
        default=("task", "domain", "format", "style"), metadata=knob("Markers the LLM tags (comma list).")
    )
    concurrency: int = field(default=4, metadata=knob("Requests in flight at once."))
    attempts: int = 3  # tries per row when the answer is invalid
    max_tokens: int = 96
    temperature: float = 0.0
    max_chars: int = 1500
    cache_dir: Path | None = field(
        default=None, metadata=knob("Disk cache dir for LLM replies.", "--llm-cache")
    )
    definitions: Path = field(default_factory=lambda: resource_path("class_definitions.json"))
    structured: Structured = field(
        default="auto", metadata=knob(structured_help("Structured output", "the allowed values"))
    )

    def __post_init__(self) -> None:
        self.require_endpoint("the LLM tagger", "llm.")
        check_structured(self.structured)


def build_messages(prompt: str, response: str, tax: Taxonomy, config: LLMConfig) -> list[dict[str, str]]:
    """System message (definitions, fallback, few-shot) and the row to tag, both as chat messages."""
    spec = json.loads(config.definitions.read_text(encoding="utf-8"))
    lines = ["You label instruction-following examples. For each category pick exactly one class."]
    for marker in config.markers:
        lines.append(f"\n## {marker}")
        for value in tax[marker].values:
            lines.append(f"- {value}: {spec.get(marker, {}).get(value, '')}".rstrip(": "))
        if UNSPECIFIED not in tax[marker].values:
            lines.append(f"- {UNSPECIFIED}: none of the above fits.")
    keys = ", ".join(f'"{m}"' for m in config.markers)
    lines.append(f"\nAnswer with one JSON object with the keys {keys} and nothing else. Examples:")
    for shot in spec.get("few_shot", []):
        answer = {m: shot["answer"].get(m, UNSPECIFIED) for m in config.markers}
        lines.append(
            f"\nPROMPT: {shot['prompt']}\nRESPONSE: {shot['response']}\nANSWER: {json.dumps(answer)}"
        )
    cut = config.max_chars
    user = f"PROMPT: {escape(prompt)[:cut]}\nRESPONSE: {escape(response)[:cut]}\nANSWER:"
    return [{"role": "system", "content": "\n".join(lines)}, {"role": "user", "content": user}]


def choices(marker: str, tax: Taxonomy) -> list[str]:
    """The answers allowed for `marker`: its values, plus `Unspecified` where the taxonomy lacks it."""
    values = [str(v) for v in tax[marker].values]
    return values if UNSPECIFIED in values else [*values, UNSPECIFIED]


def response_format(tax: Taxonomy, markers: tuple[str, ...]) -> dict[str, Any]:
    """The `response_format` constraining the answer to one allowed value per marker."""
    schema = enum_object_schema({m: choices(m, tax) for m in markers})
    return json_schema_format("tags", schema)


def validate(content: str, tax: Taxonomy, markers: tuple[str, ...]) -> dict[str, str | None]:
    """Tags from a model reply; raises MarkerError when it is not a JSON object with valid values.

    `Unspecified` is kept where the taxonomy has it, else it means absent (None).
    """
    found = JSON_RE.search(content or "")
    if found is None:
        raise MarkerError(f"no JSON object in reply {content[:80]!r}")
    try:
        data = json.loads(found.group(0))
    except json.JSONDecodeError as exc:
        raise MarkerError(f"invalid JSON in reply: {exc.msg}") from None
    if not isinstance(data, dict):
        raise MarkerError("reply is not a JSON object")
    missing = [m for m in markers if m not in data]
    if missing:
        raise MarkerError(f"reply lacks {', '.join(missing)}")
    tags: dict[str, str | None] = {}
    for marker in markers:
        raw = str(data[marker]).strip()
        if raw.lower() == UNSPECIFIED.lower() and UNSPECIFIED not in tax[marker].values:
            tags[marker] = None
        else:
            tags[marker] = str(tax.canonical(marker, raw))
    return tags


def repair_turn(reply: str, error: MarkerError) -> list[dict[str, str]]:
    """The invalid `reply` and a user turn naming what was wrong, for the next attempt."""
    return [
        {"role": "assistant", "content": reply},
        {
            "role": "user",
            "content": f"That answer is invalid: {error}. Answer again: one JSON object with every key, "
            "each value one of the allowed values.",
        },
    ]


class LLMTagger:
    """Step producing task, domain, format and style through an OpenAI-compatible endpoint."""

    name = "llm"

    def __init__(self, taxonomy: Taxonomy, config: LLMConfig):
        self.taxonomy = taxonomy
        self.config = config
        self.produces = tuple(m for m in config.markers if m in taxonomy)
        self.version = f"openai-compatible/{config.model}"
        self.client = config.client(config.cache_dir, config.structured)
        self.response_format = response_format(taxonomy, self.produces)
        self._lock = threading.Lock()
        self._counts = {"invalid_retries": 0, "invalid_rows": 0}

    def counters(self) -> dict[str, int]:
        """The client's counters (requests, cache hits, HTTP retries, failures, tokens, structured output
        fallbacks), plus retries after an invalid answer and rows left null."""
        with self._lock:
            return {**self.client.counters(), **self._counts}

    def _count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def tag(self, prompt: str, response: str) -> dict[str, str | None]:
        """Validated tags of one row; all None (and counted) when every attempt was invalid.

        After an invalid answer the tagger asks again with its answer and the validation error appended
        (a repair turn), so a retry at temperature 0 does not repeat the same reply."""
        messages = build_messages(prompt, response, self.taxonomy, self.config)
        asked = messages
        for attempt in range(self.config.attempts):
            if attempt:
                self._count("invalid_retries")
                time.sleep(self.config.backoff_s * 2 ** (attempt - 1))
            reply = self.client.chat(
                asked,
                max_tokens=self.config.max_tokens,
                temperature=self.config.temperature,
                attempt=attempt,
                response_format=self.response_format,
            )
            try:
                return validate(reply, self.taxonomy, self.produces)
            except MarkerError as error:
                asked = [*messages, *repair_turn(reply, error)]
        self._count("invalid_rows")
        return dict.fromkeys(self.produces)

    def __call__(self, batch: Mapping[str, list[Any]]) -> Batch:
        pairs = [(text_of(p), text_of(r)) for p, r in zip(batch["prompt"], batch["response"], strict=True)]
        with ThreadPoolExecutor(max_workers=self.config.concurrency) as pool:
            tags = list(pool.map(lambda pair: self.tag(*pair), pairs))
        return {m: [t[m] for t in tags] for m in self.produces}
