"""Fair turns on one model: generations take the model in arrival order, and a running generation hands it
over after `turn_tokens` tokens whenever another one is waiting, then continues from its KV cache.

So under load a short request is not stuck behind a long one: it waits at most one turn per request ahead
of it. With nobody waiting a generation runs in one piece, exactly as a plain `generate` call. The sampling
RNG state of each generation is saved when it hands over and restored when it continues, so its output
does not depend on what ran in between.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer
from transformers.generation.utils import GenerateDecoderOnlyOutput

# The KV cache's name in `generate`'s arguments and output: `cache` from transformers 5.20, before it
# `past_key_values` (vLLM's CPU build pins transformers below 5.20; treasure runs on both).
CACHE_FIELD = "cache" if "cache" in GenerateDecoderOnlyOutput.__dataclass_fields__ else "past_key_values"


class TurnLock:
    """A FIFO lock that can tell its holder whether anyone is waiting."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()
        self._held = False

    def __enter__(self) -> TurnLock:
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            while self._held or self._queue[0] is not ticket:
                self._cond.wait()
            self._queue.popleft()
            self._held = True
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()

    def waiting(self) -> bool:
        return bool(self._queue)


class HandOver(StoppingCriteria):
    """Ends this turn once it has made `turn_tokens` tokens and another generation waits for the model."""

    def __init__(self, lock: TurnLock, turn_tokens: int, start: int) -> None:
        self.lock, self.turn_tokens, self.start = lock, turn_tokens, start
        self.handed_over = False

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.Tensor:
        over = input_ids.shape[1] - self.start >= self.turn_tokens and self.lock.waiting()
        self.handed_over = self.handed_over or over
        return torch.full((input_ids.shape[0],), over, dtype=torch.bool, device=input_ids.device)


class TurnStreamer(TextIteratorStreamer):
    """A `TextIteratorStreamer` that spans several `generate` calls: each call's prompt is skipped, and the
    stream ends only at `finish()`."""

    def next_turn(self) -> None:
        self.next_tokens_are_prompt = True

    def end(self) -> None:  # generate calls this after every turn
        pass

    def finish(self) -> None:
        TextIteratorStreamer.end(self)


def generate_in_turns(
    model: Any,
    lock: TurnLock,
    inputs: dict[str, torch.Tensor],
    kwargs: dict[str, Any],
    seed: int,
    eos_ids: set[int],
    turn_tokens: int,
    streamer: TurnStreamer | None = None,
) -> torch.Tensor:
    """New token ids for a batch of one prompt, generated in turns (see the module docstring). `kwargs`
    are `generate` options with `max_new_tokens` and an optional `stopping_criteria` list."""
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    prompt_length, budget = ids.shape[1], kwargs["max_new_tokens"]
    cache, rng = None, None
    while True:
        with lock:
            if rng is None:
                torch.manual_seed(seed)
            else:
                torch.set_rng_state(rng)
            hand_over = HandOver(lock, turn_tokens, ids.shape[1])
            options = {**kwargs, "max_new_tokens": budget - (ids.shape[1] - prompt_length)}
            options["stopping_criteria"] = StoppingCriteriaList(
                [*kwargs.get("stopping_criteria", []), hand_over]
            )
            if streamer is not None:
                streamer.next_turn()
            with torch.no_grad():
                out = model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    **{CACHE_FIELD: cache},
                    return_dict_in_generate=True,
                    streamer=streamer,
                    **options,
                )
            rng = torch.get_rng_state()
        made = out.sequences.shape[1] - ids.shape[1]
        ids = out.sequences
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], made))], dim=1)
        finished = int(ids[0, -1]) in eos_ids or ids.shape[1] - prompt_length >= budget
        if not hand_over.handed_over or finished:
            return ids[:, prompt_length:]
        cache = getattr(out, CACHE_FIELD)
