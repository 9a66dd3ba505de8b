"""`EvalConfig`: which model(s), which suites, which prompts, which judge, and the decoding options."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from treasure import models
from treasure.backends import AUTO, BACKENDS, GenerationConfig
from treasure.errors import TreasureError
from treasure.generate import MODES as GENERATION_MODES
from treasure.knobs import group, knob
from treasure.openai_client import EndpointConfig, Structured, check_structured, structured_help

DEFAULT_SUITES: tuple[str, ...] = (
    "length-instruct",
    "win-rate",
    "adherence",
    "marker-prediction",
    "long-tail",
)
# the generation modes, plus strict: controlling with the requested values also prefilled in the model's block
MODES: tuple[str, ...] = (*GENERATION_MODES, "strict")


def guidance_label(scale: float) -> str:
    """How a guidance scale names a length-instruct row or an adherence mode: "G=2", "G=1.5"."""
    return f"G={scale:g}"


def normalise_suites(names: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """`"length_instruct,adherence"` or a sequence → canonical suite names (checked against the registry
    when the run starts: `treasure.evaluate.suites.resolve`)."""
    raw = names.split(",") if isinstance(names, str) else list(names)
    return tuple(dict.fromkeys(n.strip().replace("_", "-") for n in raw if n.strip()))


def _limit_scale(text: str | None) -> float | Literal["train"]:
    if text is None or text == "train":
        return "train"
    try:
        return float(text)
    except ValueError:
        raise TreasureError(f"limit_scale must be a number or train, got {text!r}") from None


@dataclass(frozen=True)
class JudgeConfig(EndpointConfig):
    """`reward-model` (offline: the annotate quality model, or `reward_model` = an HF reward model dir)
    or `openai`: pairwise prompts to an OpenAI-compatible endpoint (`EndpointConfig`), both orders, cached."""

    kind: Literal["reward-model", "openai"] = field(
        default="reward-model",
        metadata=knob("reward-model (offline) or openai (pairwise endpoint).", "--judge"),
    )
    reward_model: Path | None = field(
        default=None, metadata=knob("HF reward model dir for the reward-model judge.", "--reward-model")
    )
    tie_margin: float = field(
        default=0.1, metadata=knob("Reward-model judge: score gap below which it is a tie.", "--tie-margin")
    )
    concurrency: int = field(default=4, metadata=knob("Judge requests in flight at once."))
    max_retries: int = field(
        default=2, metadata=knob("Re-asks per ordering when the reply is not a verdict (then a tie).")
    )
    cache: Path | None = field(default=None, metadata=knob("Disk cache dir for judge replies."))
    structured: Structured = field(
        default="auto", metadata=knob(structured_help("Judge structured output", "the verdicts"))
    )

    def __post_init__(self) -> None:
        if self.kind not in ("reward-model", "openai"):
            raise TreasureError(f"judge kind must be reward-model or openai, got {self.kind!r}")
        check_structured(self.structured)


@dataclass(frozen=True)
class EvalConfig:
    """Everything `evaluate` needs; results go to `out_dir` (metrics.json, report.html, generations/).

    length-instruct: each prompt is prefixed with "Answer the following instruction using N words or
    less." N = clip(round(w_ref × scale), *limit_clip) where w_ref is the word count of the prompt's
    reference answer and `limit_scale` is a number or "train" (median training answer length /
    median reference length, read from the model dir's stats, so the limits bite a model trained on
    short answers as hard as the protocol's limits bite GPT-4-class models). Prompts without a
    reference draw N uniformly from `limit_range` with `seed`.
    """

    model_dir: Path = field(
        metadata=knob("Marked model dir written by `treasure train`, or a registry name.", positional=True)
    )
    out_dir: Path = field(
        metadata=knob("Report dir: metrics.json, report.html, generations/.", "--output", "-o")
    )
    baseline_dir: Path | None = field(
        default=None, metadata=knob("Baseline model dir (trained without markers).", "--baseline")
    )
    suites: tuple[str, ...] = field(
        default=DEFAULT_SUITES,
        metadata=knob(f"Comma list of: {', '.join(DEFAULT_SUITES)}, or a registered plugin."),
    )
    prompts: Path | None = field(
        default=None, metadata=knob("JSONL rows with `id`, `prompt` and optional reference `response`.")
    )
    n_prompts: int = field(default=100, metadata=knob("Prompts per suite (sampled with --seed)."))
    n_adherence_prompts: int = field(
        default=30, metadata=knob("Prompts per (marker, value) in the adherence suite.")
    )
    adherence_markers: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {"length_bucket": ("concise", "medium", "long")}
    )
    adherence_modes: tuple[str, ...] = field(
        default=("controlling", "strict"),
        metadata=knob("Adherence modes besides conditioning: controlling and/or strict."),
    )
    request_languages: tuple[str, ...] = field(
        default=("Spanish", "German"),
        metadata=knob(
            "language-request suite: languages asked for in plain words at the end of the prompt "
            "(taxonomy `language` values)."
        ),
    )
    prediction_markers: tuple[str, ...] = field(
        default=("task", "domain", "format", "length_bucket", "language"),
        metadata=knob("Markers the marker-prediction suite scores."),
    )
    long_tail_markers: tuple[str, ...] = field(
        default=("task", "domain", "format"), metadata=knob("Markers the long-tail suite breaks down by.")
    )
    limit_scale: float | Literal["train"] = field(
        default="train",
        metadata=knob(
            "length-instruct word limit = reference answer words x this; train: median training "
            "answer / median reference length.",
            parse=_limit_scale,
        ),
    )
    length_budget_row: bool = field(
        default=True,
        metadata=knob(
            "length-instruct: also a '+fixed +budget' row (fixed mode decoded with the length budget)."
        ),
    )
    guidance_scales: tuple[float, ...] = field(
        default=(),
        metadata=knob(
            "Guidance scales G: each adds a '+fixed G=...' length-instruct row and a 'controlling G=...' "
            "adherence mode, decoded with that guidance."
        ),
    )
    limit_clip: tuple[int, int] = field(
        default=(5, 300), metadata=knob("Word limits are clipped to MIN,MAX.")
    )
    limit_range: tuple[int, int] = field(
        default=(10, 100), metadata=knob("MIN,MAX of the limits drawn for prompts without a reference.")
    )
    seed: int = field(default=0, metadata=knob("Seed for prompt sampling, limits and decoding."))
    judge: JudgeConfig = field(default_factory=JudgeConfig, metadata=group("judge"))
    generation: GenerationConfig = field(  # its seed is `seed`
        default_factory=lambda: GenerationConfig(max_new_tokens=200, temperature=0.0, batch_size=16),
        metadata=group(exclude=("seed",)),
    )
    backend: str = field(
        default="transformers",
        metadata=knob(
            "transformers, vllm, or auto: vLLM where it is installed, transformers for what vLLM cannot "
            "do (marker guidance)."
        ),
    )
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "suites", normalise_suites(self.suites))
        object.__setattr__(self, "generation", replace(self.generation, seed=self.seed))
        object.__setattr__(self, "model_dir", models.local_path(self.model_dir))
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        if self.baseline_dir is not None:
            object.__setattr__(self, "baseline_dir", models.local_path(self.baseline_dir))
        if isinstance(self.judge, str):
            object.__setattr__(self, "judge", JudgeConfig(kind=self.judge))  # type: ignore[arg-type]
        if not set(self.adherence_modes) <= {"controlling", "strict"}:
            raise TreasureError(
                f"adherence_modes {self.adherence_modes}: controlling and/or strict "
                "(conditioning, the base rate, always runs)"
            )
        for name in ("limit_clip", "limit_range"):
            low_high = getattr(self, name)
            if len(low_high) != 2 or not 1 <= low_high[0] <= low_high[1]:
                raise TreasureError(f"{name} must be MIN,MAX with 1 <= MIN <= MAX, got {low_high!r}")
        object.__setattr__(self, "guidance_scales", tuple(float(g) for g in self.guidance_scales))
        if len(set(self.guidance_scales)) != len(self.guidance_scales):
            raise TreasureError(f"guidance_scales has a scale twice: {self.guidance_scales}")
        for scale in self.guidance_scales:
            replace(self.generation, guidance=scale)  # the decoder's own checks of the scale
        if self.backend not in (*BACKENDS, AUTO):
            raise TreasureError(f"backend {self.backend!r}: one of {', '.join((*BACKENDS, AUTO))}")
        if any(scale != 1.0 for scale in self.guidance_scales) and self.backend == "vllm":
            raise TreasureError(
                f"guidance_scales {self.guidance_scales}: marker guidance needs the transformers backend, "
                f"not {self.backend}"
            )
        if "language-request" in self.suites and not self.request_languages:
            raise TreasureError("request_languages is empty: the language-request suite needs a language")
        if self.n_prompts < 1 or self.n_adherence_prompts < 1:
            raise TreasureError("n_prompts and n_adherence_prompts must be ≥ 1")
