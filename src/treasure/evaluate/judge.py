"""Pairwise judges: which of two answers to the same prompt is better (1 = first, 0.5 = tie, 0 = second).

- `RewardModelJudge` (offline): scores both answers with the annotate quality model (embedded ridge over
  MiniLM, or any HF reward model dir) and calls a tie when the scores differ by less than `tie_margin`.
- `OpenAIJudge`: a GPT-4o-style pairwise prompt to any OpenAI-compatible endpoint, asked in both orders
  to cancel position bias (disagreeing verdicts make a tie) through `treasure.openai_client` (disk cache,
  HTTP retries, key from `api_key_env`). Where the endpoint supports it the verdict is constrained to
  A / B / TIE by a JSON schema (`JudgeConfig.structured`); either way an answer that is not a verdict is
  retried, then counted as invalid and scored as a tie.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from treasure.errors import TreasureError
from treasure.evaluate.config import JudgeConfig
from treasure.openai_client import enum_object_schema, json_schema_format
from treasure.template import escape


class Judge(Protocol):
    name: str

    def compare(self, prompts: Sequence[str], first: Sequence[str], second: Sequence[str]) -> list[float]:
        """Outcome for `first` against `second` on each prompt: 1 win, 0.5 tie, 0 loss."""
        ...


class RewardModelJudge:
    """Wins by reward score, ties within `tie_margin`."""

    def __init__(self, config: JudgeConfig):
        from treasure.annotate.pipeline import AnnotateConfig, build_steps
        from treasure.annotate.quality import QualityConfig

        quality = QualityConfig(reward_model=config.reward_model)
        self.steps = build_steps(AnnotateConfig(annotators=("quality",), quality=quality))
        self.tie_margin = config.tie_margin
        self.name = f"reward-model: {self.steps[-1].version} (tie margin {config.tie_margin})"

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """Quality score of each (prompt, response)."""
        if not prompts:
            return []
        batch: dict[str, list] = {"prompt": list(prompts), "response": list(responses)}
        for step in self.steps:
            batch.update(step(batch))
        return [float(s) for s in batch["quality"]]

    def outcomes(self, first_scores: Sequence[float], second_scores: Sequence[float]) -> list[float]:
        """1 / 0.5 / 0 per pair from two score lists."""
        return [
            0.5 if abs(a - b) < self.tie_margin else float(a > b)
            for a, b in zip(first_scores, second_scores, strict=True)
        ]

    def compare(self, prompts: Sequence[str], first: Sequence[str], second: Sequence[str]) -> list[float]:
        return self.outcomes(self.score(prompts, first), self.score(prompts, second))


PAIRWISE_SYSTEM = (
    "You are a helpful assistant that compares the quality of two answers to the same user instruction. "
    "Judge helpfulness, correctness and how well each answer follows the instruction; ignore the order "
    "in which they are shown and do not prefer longer answers for their length alone."
)
PAIRWISE_USER = """Instruction:
{prompt}

[Answer A]
{first}
[End of Answer A]

[Answer B]
{second}
[End of Answer B]

Which answer is better? Reply with exactly one word: A, B or TIE."""
VERDICTS = ["A", "B", "TIE"]
VERDICT = re.compile(rf"^\W*({'|'.join(VERDICTS)})\W*$", re.IGNORECASE)
VERDICT_FORMAT = json_schema_format("verdict", enum_object_schema({"verdict": VERDICTS}))


def parse_verdict(reply: str) -> str | None:
    """'A', 'B' or 'TIE' from a plain reply or a structured one (`{"verdict": ...}`); None otherwise."""
    try:
        data = json.loads(reply)
    except json.JSONDecodeError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("verdict"), str):
        reply = data["verdict"]
    match = VERDICT.match(reply.strip())
    return match.group(1).upper() if match else None


class OpenAIJudge:
    """Pairwise judge over an OpenAI-compatible endpoint."""

    def __init__(self, config: JudgeConfig, cache_dir: Path):
        config.require_endpoint("the openai judge", "judge.")
        self.config = config
        self.client = config.client(Path(config.cache or cache_dir), config.structured)
        self.name = f"openai-compatible pairwise: {config.model} @ {config.endpoint} (both orders)"
        self._lock = threading.Lock()
        self._invalid = 0

    @property
    def counts(self) -> dict[str, int]:
        """The client's counters (structured output fallbacks included) plus `invalid` (orderings with no
        verdict after every attempt)."""
        with self._lock:
            return {**self.client.counters(), "invalid": self._invalid}

    def verdict(self, prompt: str, first: str, second: str) -> str | None:
        """'A', 'B' or 'TIE' for one ordering; None when every attempt was not a verdict."""
        user = PAIRWISE_USER.format(prompt=escape(prompt), first=escape(first), second=escape(second))
        messages = [{"role": "system", "content": PAIRWISE_SYSTEM}, {"role": "user", "content": user}]
        for attempt in range(1 + self.config.max_retries):
            reply = self.client.chat(messages, max_tokens=24, attempt=attempt, response_format=VERDICT_FORMAT)
            verdict = parse_verdict(reply)
            if verdict:
                return verdict
        with self._lock:
            self._invalid += 1
        return None

    def _pair(self, prompt: str, first: str, second: str) -> float:
        forward = {"A": 1.0, "B": 0.0, "TIE": 0.5, None: 0.5}[self.verdict(prompt, first, second)]
        backward = {"A": 0.0, "B": 1.0, "TIE": 0.5, None: 0.5}[self.verdict(prompt, second, first)]
        return (forward + backward) / 2

    def compare(self, prompts: Sequence[str], first: Sequence[str], second: Sequence[str]) -> list[float]:
        with ThreadPoolExecutor(max_workers=self.config.concurrency) as pool:
            return list(pool.map(self._pair, prompts, first, second))


def make_judge(config: JudgeConfig, cache_dir: Path) -> RewardModelJudge | OpenAIJudge:
    """The judge named by `config.kind`."""
    if config.kind == "openai":
        return OpenAIJudge(config, cache_dir)
    if config.kind == "reward-model":
        return RewardModelJudge(config)
    raise TreasureError(f"unknown judge {config.kind!r}; valid: reward-model, openai")


def win_rate(outcomes: Sequence[float]) -> float | None:
    """Mean outcome (wins + ties / 2), or None for no pairs."""
    return round(sum(outcomes) / len(outcomes), 4) if outcomes else None
