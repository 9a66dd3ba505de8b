"""The transformers side of marker guidance and the word budget: a stopping criterion that ends the first
phase of a guided generation once its template block is decided, and the word budget's logits processor.
The guidance itself is transformers' own `UnbatchedClassifierFreeGuidanceLogitsProcessor`
(`guidance_processor`). What they compute is in `treasure.guidance` and `treasure.budget`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from transformers import LogitsProcessor, StoppingCriteria
from transformers.generation.logits_process import UnbatchedClassifierFreeGuidanceLogitsProcessor

from treasure import budget, template


def _decoded(tokenizer: Any, ids: torch.Tensor) -> str:
    return tokenizer.decode(ids.tolist(), skip_special_tokens=True)


class BlockDecided(StoppingCriteria):
    """Stops a row once its completion (`prefixes[row]`, the prefill, + the tokens after `start`) has its
    leading template block closed, or has shown it opens with none. `decided[row]` is then how many
    tokens that took."""

    def __init__(self, tokenizer: Any, start: int, prefixes: Sequence[str]) -> None:
        self.tokenizer, self.start, self.prefixes = tokenizer, start, list(prefixes)
        self.decided: list[int | None] = [None] * len(self.prefixes)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.Tensor:
        made = input_ids.shape[1] - self.start
        for row, prefix in enumerate(self.prefixes):
            if self.decided[row] is None:
                raw = prefix + _decoded(self.tokenizer, input_ids[row, self.start :])
                if template.block_end(raw) is not None:
                    self.decided[row] = made
        done = [d is not None for d in self.decided]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class WordBudget(LogitsProcessor):
    """Forces end-of-turn on a row once its answer has started word `limits[row] + 1`.

    A row's completion is `prefixes[row]` (text written before this `generate` call: the prefill, the
    block of a guided generation) + its tokens after `start`; its answer is the text after the template
    block (`budget.answer_text`). The extra word's first token is cut by `budget.trim_to_budget` after.
    """

    def __init__(
        self,
        tokenizer: Any,
        start: int,
        prefixes: Sequence[str],
        limits: Sequence[int | None],
        eos_ids: Sequence[int],
    ) -> None:
        self.tokenizer, self.start = tokenizer, start
        self.prefixes, self.limits, self.eos_ids = list(prefixes), list(limits), sorted(eos_ids)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for row, limit in enumerate(self.limits):
            if limit is None:
                continue
            raw = self.prefixes[row] + _decoded(self.tokenizer, input_ids[row, self.start :])
            if budget.count_words(budget.answer_text(raw)) > limit:
                scores[row] = float("-inf")
                scores[row, self.eos_ids] = 0.0
        return scores


class _OwnGuidanceNotice(logging.Filter):
    """Drops transformers' notice that our guidance processor replaces the one `generate` made: intended."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("A custom logits processor") and _CFG.__name__ in message)


_CFG = UnbatchedClassifierFreeGuidanceLogitsProcessor
logging.getLogger("transformers.generation.utils").addFilter(_OwnGuidanceNotice())


def guidance_processor(
    model: Any, scale: float, negative: dict[str, torch.Tensor]
) -> UnbatchedClassifierFreeGuidanceLogitsProcessor:
    """transformers' classifier-free guidance with `negative` (left-padded `input_ids`, `attention_mask`)
    as the negative branch, which it runs with its own KV cache. Passed to `generate` as a processor
    (with `guidance_scale`, so it replaces the one `generate` would make): the same instance then serves
    every fair turn of a generation, its cache included."""
    return UnbatchedClassifierFreeGuidanceLogitsProcessor(
        scale, model, negative["input_ids"], negative["attention_mask"], use_cache=True
    )
