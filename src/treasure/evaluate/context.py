"""`EvalContext`: what the suites of one `evaluate` run share, each piece computed once, when first used.

Several suites reuse the same work: the plain prompts answered by each model ("plain-marked",
"plain-baseline"), the annotators' labels of the reference answers, the judge, and results of other
suites (long-tail splits win-rate's outcomes and length-instruct's violations: see `shared`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from treasure.artifacts import GENERATIONS, JUDGE_CACHE, ModelDir
from treasure.evaluate.config import EvalConfig
from treasure.evaluate.judge import OpenAIJudge, RewardModelJudge, make_judge
from treasure.evaluate.prompts import EvalPrompt, alpaca_eval, sample, user_prompts
from treasure.evaluate.reannotate import reannotate
from treasure.evaluate.runs import GenerationRuns
from treasure.taxonomy import Taxonomy

T = TypeVar("T")


class EvalContext:
    """The config, the models' generation runs and the lazily computed inputs of the suites."""

    def __init__(self, config: EvalConfig):
        self.config = config
        self.models: dict[str, Path] = {"marked": config.model_dir}
        if config.baseline_dir is not None:
            self.models["baseline"] = config.baseline_dir
        self.runs = GenerationRuns(
            self.models, config.out_dir / GENERATIONS, config.generation, config.backend, config.progress
        )
        self.timings: dict[str, float] = {}  # seconds of the slow steps, for metrics.json
        self._shared: dict[str, Any] = {}

    @cached_property
    def model_dir(self) -> ModelDir:
        """The marked model's dir with its taxonomy, stats and reports."""
        return ModelDir.load(self.config.model_dir)

    @cached_property
    def taxonomy(self) -> Taxonomy:
        """The marked model's taxonomy (the default one when its dir has none)."""
        return self.model_dir.taxonomy or Taxonomy.default()

    @cached_property
    def stats(self) -> dict[str, Any]:
        """The marked model's training stats.json ({} when absent)."""
        return self.model_dir.stats.data

    @cached_property
    def pool(self) -> list[EvalPrompt]:
        """Every prompt suites sample from: the user's file, else AlpacaEval."""
        return user_prompts(self.config.prompts) if self.config.prompts else alpaca_eval()

    @cached_property
    def prompts(self) -> list[EvalPrompt]:
        """The `n_prompts` prompts of the main sample."""
        return sample(self.pool, self.config.n_prompts, self.config.seed, "main")

    @cached_property
    def judge(self) -> RewardModelJudge | OpenAIJudge:
        """The pairwise judge of `config.judge`."""
        return make_judge(self.config.judge, self.config.out_dir / JUDGE_CACHE)

    @cached_property
    def labels(self) -> list[dict[str, Any]]:
        """Annotators' markers of each prompt's reference answer (prediction and long-tail markers)."""
        config = self.config
        markers = list(dict.fromkeys([*config.prediction_markers, *config.long_tail_markers]))
        with self.timed("label references"):
            return reannotate(
                [p.prompt for p in self.prompts],
                [p.reference or "" for p in self.prompts],
                markers,
                self.taxonomy,
            )

    def plain(self, model: str) -> list[dict[str, Any]]:
        """`model`'s answers to the main prompts as they are (run "plain-<model>")."""
        name = f"plain-{model}"
        return self.shared(name, lambda: self.runs.run(name, model, [p.prompt for p in self.prompts]))

    def shared(self, key: str, compute: Callable[[], T]) -> T:
        """`compute()`, run once per context under `key`: how suites share results with each other."""
        if key not in self._shared:
            self._shared[key] = compute()
        return self._shared[key]

    @contextmanager
    def timed(self, step: str) -> Iterator[None]:
        """Record the seconds the block takes as `timings[step]`."""
        began = time.perf_counter()
        yield
        self.timings[step] = time.perf_counter() - began
