"""The default backend: Hugging Face transformers `generate`, batched with left padding, CPU or GPU."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, StoppingCriteria, StoppingCriteriaList

from treasure.backends import SAMPLING_EPS, Completion, GenerationConfig, Stop, checked_model_dir, token_ids
from treasure.backends.turns import TurnLock, TurnStreamer, generate_in_turns


class _StopWhenRequested(StoppingCriteria):
    """Stops every row of the batch once `stop` is requested (checked after each generated token)."""

    def __init__(self, stop: Stop) -> None:
        self.stop = stop

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.Tensor:
        stopped = self.stop.requested()
        return torch.full((input_ids.shape[0],), stopped, dtype=torch.bool, device=input_ids.device)


class TransformersBackend:
    """Wraps a causal LM and its tokenizer. Generations take the model in turns (`backends.turns`): a
    single prompt hands it over every `turn_tokens` tokens while another waits (0: never); a batch runs in
    one turn."""

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

    def _generate_kwargs(self, config: GenerationConfig, stop: Stop | None) -> dict[str, Any]:
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
        if stop is not None:
            kwargs["stopping_criteria"] = StoppingCriteriaList([_StopWhenRequested(stop)])
        return kwargs

    def _encode(self, texts: list[str]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        return {k: v.to(self.device) for k, v in batch.items()}

    def complete(
        self, texts: list[str], config: GenerationConfig, stop: Stop | None = None
    ) -> list[Completion]:
        """Complete prompt texts as one left-padded batch, sampled with `config.seed`.

        `stop` ends it early; a request whose stop came while it waited for the model is not started.
        """
        if stop is not None and stop.requested():
            return [Completion(text="", n_tokens=0, finished=False) for _ in texts]
        new_tokens = self._generate(self._encode(texts), config, stop).tolist()
        return [self._completion(row) for row in new_tokens]

    def _generate(
        self,
        inputs: dict[str, torch.Tensor],
        config: GenerationConfig,
        stop: Stop | None,
        streamer: TurnStreamer | None = None,
    ) -> torch.Tensor:
        kwargs = self._generate_kwargs(config, stop)
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

    def stream(self, text: str, config: GenerationConfig, stop: Stop | None = None) -> Iterator[str]:
        """Yield decoded text pieces as they are generated (a worker thread runs the generation).

        Closing the iterator early (the client went away) stops the generation after its next token.
        """
        inputs = self._encode([text])
        streamer = TurnStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        stop = stop or Stop()
        errors: list[BaseException] = []

        def work() -> None:
            try:
                self._generate(inputs, config, stop, streamer)
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

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` under this model's tokenizer."""
        return len(token_ids(self.tokenizer, text))
