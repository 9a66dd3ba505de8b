"""`EvalConfig`: which model(s), which suites, which prompts, which judge, and the decoding options."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from treasure import models
from treasure.backends import GenerationConfig
from treasure.errors import TreasureError
from treasure.generate import MODES as GENERATION_MODES

if TYPE_CHECKING:
    from treasure.evaluate.suite import Suite

DEFAULT_SUITES: tuple[str, ...] = (
    "length-instruct",
    "win-rate",
    "adherence",
    "marker-prediction",
    "long-tail",
)
# the generation modes, plus strict: controlling with the requested values also prefilled in the model's block
MODES: tuple[str, ...] = (*GENERATION_MODES, "strict")


def _registry() -> Mapping[str, Suite]:
    from treasure.evaluate.suites import REGISTRY  # the suites import this module, so not at the top

    return REGISTRY


def __getattr__(name: str) -> Any:
    """`SUITES` (every registered suite's name) and `NEEDS_BASELINE` (those comparing against the
    baseline), read from the registry when asked."""
    if name == "SUITES":
        return tuple(_registry())
    if name == "NEEDS_BASELINE":
        return frozenset(n for n, suite in _registry().items() if suite.needs_baseline)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def normalise_suites(names: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """`"length_instruct,adherence"` or a sequence → canonical suite names (unknown names raise)."""
    raw = names.split(",") if isinstance(names, str) else list(names)
    suites = tuple(dict.fromkeys(n.strip().replace("_", "-") for n in raw if n.strip()))
    registry = _registry()
    unknown = [n for n in suites if n not in registry]
    if unknown:
        raise TreasureError(f"unknown suite(s) {', '.join(unknown)}; valid: {', '.join(registry)}")
    return suites


@dataclass(frozen=True)
class JudgeConfig:
    """`reward-model` (offline: the annotate quality model, or `reward_model` = an HF reward model dir)
    or `openai` (pairwise prompts to any OpenAI-compatible endpoint, both orders, cached)."""

    kind: Literal["reward-model", "openai"] = "reward-model"
    reward_model: Path | None = None
    tie_margin: float = 0.1
    endpoint: str | None = None
    model: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 4
    max_retries: int = 2
    cache: Path | None = None


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

    model_dir: Path
    out_dir: Path
    baseline_dir: Path | None = None
    suites: tuple[str, ...] = DEFAULT_SUITES
    prompts: Path | None = None
    n_prompts: int = 100
    n_adherence_prompts: int = 30
    adherence_markers: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {"length_bucket": ("concise", "medium", "long")}
    )
    adherence_modes: tuple[str, ...] = ("controlling", "strict")
    prediction_markers: tuple[str, ...] = ("task", "domain", "format", "length_bucket", "language")
    long_tail_markers: tuple[str, ...] = ("task", "domain", "format")
    limit_scale: float | Literal["train"] = "train"
    limit_clip: tuple[int, int] = (5, 300)
    limit_range: tuple[int, int] = (10, 100)
    seed: int = 0
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    generation: GenerationConfig = field(
        default_factory=lambda: GenerationConfig(max_new_tokens=200, temperature=0.0, batch_size=16)
    )
    backend: str = "transformers"
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "suites", normalise_suites(self.suites))
        object.__setattr__(self, "model_dir", models.local_path(self.model_dir))
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        if self.baseline_dir is not None:
            object.__setattr__(self, "baseline_dir", models.local_path(self.baseline_dir))
        if isinstance(self.judge, str):
            object.__setattr__(self, "judge", JudgeConfig(kind=self.judge))  # type: ignore[arg-type]
        missing = sorted(n for n in self.suites if _registry()[n].needs_baseline)
        if missing and self.baseline_dir is None:
            raise TreasureError(
                f"suite(s) {', '.join(missing)} compare against a baseline: pass --baseline DIR"
            )
        if not set(self.adherence_modes) <= {"controlling", "strict"}:
            raise TreasureError(
                f"adherence_modes {self.adherence_modes}: controlling and/or strict "
                "(conditioning, the base rate, always runs)"
            )
        if self.n_prompts < 1 or self.n_adherence_prompts < 1:
            raise TreasureError("n_prompts and n_adherence_prompts must be ≥ 1")
