"""Inference backends for `treasure.generate`: each turns finished prompt texts into completions."""

from __future__ import annotations

import importlib.util
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from treasure.errors import TreasureError
from treasure.knobs import knob

BACKENDS = ("transformers", "vllm")
AUTO = "auto"  # vLLM where it is installed and can honour the request, transformers otherwise


MAX_SEED = 2**63 - 1  # torch.manual_seed takes 64-bit seeds
SAMPLING_EPS = 1e-5  # temperatures below this decode greedily (as vLLM does): logits / 1e-300 overflow
MAX_GUIDANCE = 100.0  # far above useful scales (about 1.5 to 5); keeps the guided scores finite


@dataclass
class GenerationConfig:
    """Decoding options shared by every backend (temperature 0 means greedy; same seed, same output).

    `batch_size` prompts go to the backend at once; batch i is sampled with seed `seed + i`.
    """

    max_new_tokens: int = field(default=256, metadata=knob("Completion length cap in tokens."))
    temperature: float = field(default=0.7, metadata=knob("Sampling temperature (0 = greedy)."))
    top_p: float = field(default=0.95, metadata=knob("Nucleus sampling mass."))
    top_k: int = field(default=0, metadata=knob("Sample from the k most likely tokens (0: off)."))
    repetition_penalty: float = field(default=1.0, metadata=knob("Penalty on repeated tokens (1.0: off)."))
    seed: int = field(default=0, metadata=knob("Seed of the sampling (batch i: seed + i)."))
    batch_size: int = field(default=16, metadata=knob("Prompts sent to the backend at once."))
    guidance: float = field(
        default=1.0,
        metadata=knob(
            "Marker guidance scale G (1 = off): next-token logits = negative + G x (positive - negative), "
            "the negative branch being the same input without the given markers (controlling and fixed "
            "modes; transformers backend only; two forward passes per token)."
        ),
    )
    length_budget: bool = field(
        default=False,
        metadata=knob(
            "Word budget: when the given or detected markers hold length_tokens=N, the answer stops "
            "after N words and is cut back to its last sentence end (a guarantee, not learned)."
        ),
    )

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be {rule}, got {getattr(self, name)!r}"
            for name, ok, rule in (
                ("max_new_tokens", self.max_new_tokens >= 1, "at least 1"),
                ("temperature", self.temperature >= 0, "0 (greedy) or more"),
                ("top_p", 0 < self.top_p <= 1, "in (0, 1]"),
                ("top_k", self.top_k >= 0, "0 (off) or more"),
                ("repetition_penalty", self.repetition_penalty > 0, "above 0 (1.0 = off)"),
                ("batch_size", self.batch_size >= 1, "at least 1"),
                ("seed", 0 <= self.seed <= MAX_SEED, f"in [0, {MAX_SEED}]"),
                (
                    "guidance",
                    math.isfinite(self.guidance) and 0 <= self.guidance <= MAX_GUIDANCE,
                    f"in [0, {MAX_GUIDANCE:g}] (1 = off)",
                ),
                ("length_budget", isinstance(self.length_budget, bool), "true or false"),
            )
            if not ok
        ]
        if problems:
            raise TreasureError("invalid generation options: " + "; ".join(problems))

    @property
    def guided(self) -> bool:
        """Whether marker guidance is on (it still only acts on prompts with given markers)."""
        return self.guidance != 1.0


@dataclass(frozen=True)
class Steering:
    """What a backend that steers (`steers = True`: transformers) gets per prompt, beside its text, for
    marker guidance and the word budget (`treasure.guidance`, `treasure.budget`).

    `prefill` is the completion text already at the end of the prompt text (strict mode); the negative
    branch of guidance starts from `negative_prompt` (the prompt text without the given markers and without
    the prefill; None: no guidance for this prompt), and the lines of the `given` markers leave its
    template block. `word_limit` is the answer's word budget (None: none).
    """

    prefill: str = ""
    negative_prompt: str | None = None
    given: frozenset[str] = frozenset()
    word_limit: int | None = None


def refuse_guidance(config: GenerationConfig, engine: str) -> None:
    """The `check` of a backend without classifier-free guidance: a `TreasureError` when guidance is on."""
    if config.guided:
        raise TreasureError(
            f"marker guidance (guidance {config.guidance:g}) needs the transformers backend: {engine} has "
            "no classifier-free guidance (use the transformers backend, or guidance 1)"
        )


@dataclass
class Completion:
    """Text the model wrote after the prompt, how many tokens, and whether it stopped on its own."""

    text: str
    n_tokens: int
    finished: bool


@dataclass(eq=False)
class Stop:
    """Ends a generation early: `cancel` (client gone, server draining) or the `deadline` passing.

    `deadline` is a `time.monotonic()` value. Backends check it between tokens where they can.
    """

    cancel: threading.Event = field(default_factory=threading.Event)
    deadline: float | None = None

    def requested(self) -> bool:
        return self.cancel.is_set() or self.timed_out()

    def timed_out(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


def checked_model_dir(path: str | Path) -> Path:
    """`path` as a Path; a `TreasureError` if it holds no model (no config.json)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise TreasureError(f"{path}: not a model dir (no config.json); make one with `treasure train`")
    return path


def token_ids(tokenizer: Any, text: str) -> list[int]:
    """How every backend encodes a finished prompt text (its chat template already holds the specials)."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


class Backend(Protocol):
    """What `Generator` needs from an inference engine."""

    tokenizer: Any
    context_length: int | None  # prompt + completion tokens the model can attend to (None: unknown)

    def complete(
        self, texts: list[str], config: GenerationConfig, stop: Stop | None = None
    ) -> list[Completion]:
        """Complete each fully formatted prompt text (chat template already applied)."""
        ...

    def stream(self, text: str, config: GenerationConfig, stop: Stop | None = None) -> Iterator[str]:
        """Yield the completion of one prompt text piece by piece; closing the iterator stops it."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` under the model's tokenizer."""
        ...

    def check(self, config: GenerationConfig) -> None:
        """Refuse, with a `TreasureError`, options this backend cannot honour (e.g. marker guidance)."""
        ...


def vllm_installed() -> bool:
    """True when vLLM (or its CPU build) can be imported here."""
    return importlib.util.find_spec("vllm") is not None


def pick_backend(name: str, config: GenerationConfig) -> str:
    """The backend that runs `config`: `name`, or for `auto` vLLM where it is installed and the request
    needs nothing vLLM lacks (marker guidance runs two branches per token: transformers only)."""
    if name != AUTO:
        return name
    return "vllm" if vllm_installed() and not config.guided else "transformers"


def load_backend(name: str, model_dir: str | Path, **options: Any) -> Backend:
    """Instantiate the backend called `name` for a model dir."""
    if name == "transformers":
        from treasure.backends.transformers_backend import TransformersBackend

        return TransformersBackend(model_dir, **options)
    if name == "vllm":
        from treasure.backends.vllm_backend import VLLMBackend

        return VLLMBackend(model_dir, **options)
    if name == "upstream":
        from treasure.backends.upstream import UpstreamBackend

        return UpstreamBackend(model_dir, **options)
    from treasure.errors import TreasureError

    raise TreasureError(f"unknown backend {name!r}; valid: {', '.join(BACKENDS)}")
