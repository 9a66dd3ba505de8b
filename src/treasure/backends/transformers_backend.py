"""The default backend: Hugging Face transformers `generate`, batched with left padding, CPU or GPU.

It steers (`Steering`, per prompt). Marker guidance (`treasure.guidance`) generates in two phases: the
template block first, unguided, exactly as without guidance; then the answer, from the positive branch
(prompt + block) with transformers' classifier-free guidance over the negative branch (the same text
without the given markers). The word budget (`treasure.budget`) forces end-of-turn once the answer is over
its words. Without either, generation is one plain `generate` call, as it always was.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)

from treasure import guidance
from treasure.backends import (
    SAMPLING_EPS,
    Completion,
    GenerationConfig,
    Steering,
    Stop,
    checked_model_dir,
    token_ids,
)
from treasure.backends.steering import BlockDecided, WordBudget, guidance_processor
from treasure.backends.turns import TurnLock, TurnStreamer, generate_in_turns


class _StopWhenRequested(StoppingCriteria):
    """Stops every row of the batch once `stop` is requested (checked after each generated token)."""

    def __init__(self, stop: Stop) -> None:
        self.stop = stop

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.Tensor:
        stopped = self.stop.requested()
        return torch.full((input_ids.shape[0],), stopped, dtype=torch.bool, device=input_ids.device)


@dataclass
class _Phase:
    """What one `generate` call of a steered completion adds: stopping criteria, processors, options."""

    criteria: list[StoppingCriteria] = field(default_factory=list)
    processors: list[LogitsProcessor] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)


def _guided(config: GenerationConfig, steers: Sequence[Steering]) -> bool:
    return config.guided and any(s.negative_prompt is not None for s in steers)


class TransformersBackend:
    """Wraps a causal LM and its tokenizer. Generations take the model in turns (`backends.turns`): a
    single prompt hands it over every `turn_tokens` tokens while another waits (0: never); a batch runs in
    one turn."""

    steers = True  # `complete` and `stream` take `Steering` (marker guidance, word budget)

    def __init__(self, model_dir: str | Path, device: str | None = None, turn_tokens: int = 16) -> None:
        path = checked_model_dir(model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = AutoModelForCausalLM.from_pretrained(path).to(self.device).eval()
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids: set[int] = set(eos if isinstance(eos, list) else [eos])
        self.context_length: int | None = getattr(self.model.config, "max_position_embeddings", None)
        self.turn_tokens = turn_tokens
        self._turns = TurnLock()

    def check(self, config: GenerationConfig) -> None:
        """Every option of `GenerationConfig` is honoured here: nothing to refuse."""

    def _generate_kwargs(
        self, config: GenerationConfig, stop: Stop | None, phase: _Phase | None = None
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": config.max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": sorted(self.eos_ids),
            "repetition_penalty": config.repetition_penalty,
        }
        if config.temperature >= SAMPLING_EPS:
            kwargs.update(do_sample=True, temperature=config.temperature, top_p=config.top_p)
            kwargs["top_k"] = config.top_k or None
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        criteria: list[StoppingCriteria] = [] if stop is None else [_StopWhenRequested(stop)]
        if phase is not None:
            criteria += phase.criteria
            if phase.processors:
                kwargs["logits_processor"] = LogitsProcessorList(phase.processors)
            kwargs.update(phase.options)
        if criteria:
            kwargs["stopping_criteria"] = StoppingCriteriaList(criteria)
        return kwargs

    def _encode(self, texts: list[str]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        return {k: v.to(self.device) for k, v in batch.items()}

    def complete(
        self,
        texts: list[str],
        config: GenerationConfig,
        stop: Stop | None = None,
        steering: Sequence[Steering | None] | None = None,
    ) -> list[Completion]:
        """Complete prompt texts as one left-padded batch, sampled with `config.seed`.

        `stop` ends it early; a request whose stop came while it waited for the model is not started.
        `steering`, one per text (None: none), asks for marker guidance and word budgets.
        """
        if stop is not None and stop.requested():
            return [Completion(text="", n_tokens=0, finished=False) for _ in texts]
        steers = [s or Steering() for s in steering or [None] * len(texts)]
        if len(steers) != len(texts):
            raise ValueError(f"{len(steers)} steerings for {len(texts)} texts")
        if _guided(config, steers):
            return self._complete_guided(texts, config, stop, steers)
        inputs = self._encode(texts)
        phase = self._budget_phase(inputs, steers, [""] * len(texts))
        new_tokens = self._generate(inputs, config, stop, phase=phase).tolist()
        return [self._completion(row) for row in new_tokens]

    def _complete_guided(
        self, texts: list[str], config: GenerationConfig, stop: Stop | None, steers: list[Steering]
    ) -> list[Completion]:
        """Phase 1: every completion up to the end of its template block, unguided. Phase 2: the answers,
        guided, of the rows not finished by then (end-of-turn, token limit, a block never closed)."""
        inputs = self._encode(texts)
        block = BlockDecided(self.tokenizer, inputs["input_ids"].shape[1], [s.prefill for s in steers])
        first = self._generate(inputs, config, stop, phase=_Phase(criteria=[block])).tolist()
        rows = [self._first_phase(tokens, block.decided[i]) for i, tokens in enumerate(first)]
        go_on = [i for i, row in enumerate(rows) if self._answer_left(row, block.decided[i], config)]
        if not go_on or (stop is not None and stop.requested()):
            return rows
        room = [config.max_new_tokens - rows[i].n_tokens for i in go_on]
        positive, phase = self._answer_phase(
            config, [texts[i] for i in go_on], [steers[i] for i in go_on], [rows[i].text for i in go_on]
        )
        second = self._generate(positive, replace(config, max_new_tokens=max(room)), stop, phase=phase)
        for i, tokens, left in zip(go_on, second.tolist(), room, strict=True):
            more = self._completion(tokens[:left])
            rows[i] = Completion(rows[i].text + more.text, rows[i].n_tokens + more.n_tokens, more.finished)
        return rows

    def _first_phase(self, tokens: list[int], decided: int | None) -> Completion:
        """A row of phase 1: its tokens up to where its block was decided (all of them if it never was)."""
        return self._completion(tokens if decided is None else tokens[:decided])

    @staticmethod
    def _answer_left(row: Completion, decided: int | None, config: GenerationConfig) -> bool:
        return decided is not None and not row.finished and row.n_tokens < config.max_new_tokens

    def _answer_phase(
        self, config: GenerationConfig, texts: list[str], steers: list[Steering], written: list[str]
    ) -> tuple[dict[str, torch.Tensor], _Phase]:
        """Phase 2 of guidance: the positive inputs, and the phase that guides them by the negative ones."""
        branches = [
            guidance.branch_texts(text, s.prefill, s.negative_prompt, done, s.given)
            if s.negative_prompt is not None
            else (text + done, text + done)  # no given markers: alike branches, guidance changes nothing
            for text, s, done in zip(texts, steers, written, strict=True)
        ]
        positive = self._encode([p for p, _ in branches])
        negative = self._encode([n for _, n in branches])
        phase = _Phase(
            processors=[guidance_processor(self.model, config.guidance, negative)],
            options={"guidance_scale": config.guidance},
        )
        budget = self._budget_phase(positive, steers, written)
        if budget is not None:
            phase.processors += budget.processors
        return positive, phase

    def _budget_phase(
        self, inputs: dict[str, torch.Tensor], steers: list[Steering], written: list[str]
    ) -> _Phase | None:
        """The word budget's processor for a `generate` call on `inputs`, whose completions so far are
        prefill + `written`; None when no row has a budget."""
        limits = [s.word_limit for s in steers]
        if all(limit is None for limit in limits):
            return None
        prefixes = [s.prefill + done for s, done in zip(steers, written, strict=True)]
        start = inputs["input_ids"].shape[1]
        return _Phase(processors=[WordBudget(self.tokenizer, start, prefixes, limits, self.eos_ids)])

    def _generate(
        self,
        inputs: dict[str, torch.Tensor],
        config: GenerationConfig,
        stop: Stop | None,
        streamer: TurnStreamer | None = None,
        phase: _Phase | None = None,
    ) -> torch.Tensor:
        kwargs = self._generate_kwargs(config, stop, phase)
        if inputs["input_ids"].shape[0] == 1 and self.turn_tokens > 0:
            return generate_in_turns(
                self.model, self._turns, inputs, kwargs, config.seed, self.eos_ids, self.turn_tokens, streamer
            )
        with self._turns, torch.no_grad():  # a batch keeps the model for one turn
            torch.manual_seed(config.seed)
            generated = self.model.generate(**inputs, **kwargs, streamer=streamer)
        return generated[:, inputs["input_ids"].shape[1] :]

    def _completion(self, tokens: list[int]) -> Completion:
        stop = next((i for i, tok in enumerate(tokens) if tok in self.eos_ids), None)
        kept = tokens if stop is None else tokens[:stop]
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        return Completion(
            text=text, n_tokens=len(tokens) if stop is None else stop + 1, finished=stop is not None
        )

    def stream(
        self, text: str, config: GenerationConfig, stop: Stop | None = None, steering: Steering | None = None
    ) -> Iterator[str]:
        """Yield decoded text pieces as they are generated (a worker thread runs the generation).

        Closing the iterator early (the client went away) stops the generation after its next token.
        `steering` asks for marker guidance and a word budget, as in `complete`.
        """
        inputs = self._encode([text])
        streamer = TurnStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        stop = stop or Stop()
        steer = steering or Steering()
        errors: list[BaseException] = []

        def work() -> None:
            try:
                if _guided(config, [steer]):
                    self._stream_guided(text, inputs, config, stop, steer, streamer)
                else:
                    phase = self._budget_phase(inputs, [steer], [""])
                    self._generate(inputs, config, stop, streamer, phase=phase)
            except BaseException as exc:  # surfaced to the caller below
                errors.append(exc)
            finally:
                streamer.finish()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        exhausted = False
        try:
            yield from (piece for piece in streamer if piece)
            exhausted = True
        finally:
            if not exhausted:  # closed early: stop the generation
                stop.cancel.set()
            thread.join()
        if errors:
            raise errors[0]

    def _stream_guided(
        self,
        text: str,
        inputs: dict[str, torch.Tensor],
        config: GenerationConfig,
        stop: Stop,
        steer: Steering,
        streamer: TurnStreamer,
    ) -> None:
        """`_complete_guided` for one prompt: the block (phase 1) goes to the stream in one piece once it
        is decided (the caller holds it back anyway), then the answer (phase 2) token by token."""
        block = BlockDecided(self.tokenizer, inputs["input_ids"].shape[1], [steer.prefill])
        first = self._generate(inputs, config, stop, phase=_Phase(criteria=[block])).tolist()
        row = self._first_phase(first[0], block.decided[0])
        if row.text:
            streamer.on_finalized_text(row.text)
        if not self._answer_left(row, block.decided[0], config) or stop.requested():
            return
        positive, phase = self._answer_phase(config, [text], [steer], [row.text])
        room = replace(config, max_new_tokens=config.max_new_tokens - row.n_tokens)
        self._generate(positive, room, stop, streamer, phase=phase)

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` under this model's tokenizer."""
        return len(token_ids(self.tokenizer, text))
