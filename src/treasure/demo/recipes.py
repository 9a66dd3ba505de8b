"""The demo's recipes (`smollm2`, `smollm2-full`, `tiny`): what it trains on and how much it evaluates, and
`DemoConfig` (where it writes, its seed, the hash that decides which cached stages are still valid)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from treasure.errors import TreasureError
from treasure.knobs import knob


@dataclass(frozen=True)
class DemoRecipe:
    """What the demo trains on and how much it evaluates; `RECIPES` holds the shipped ones."""

    model: str
    train_recipe: str
    markers: tuple[str, ...]
    # The paper drops markers at 0.5 / 0.5; a model with minutes of CPU training learns to follow prompt
    # markers only when it sees them often, so the demo shows them more often.
    dataset_dropout: float
    marker_dropout: float
    max_prompt_words: int
    max_response_words: int
    english_rows: int | None = None  # rows kept after the length filter (shuffled with the seed); None: all
    # Response-length bands (words) the English rows are drawn from, equally many from each: gaps between
    # them put the quantile length buckets far apart, which a model with minutes of training can learn.
    response_bands: tuple[tuple[int, int], ...] = ()
    # Length-contrast rows: this many more rows of the longest band, each also cut after whole sentences at
    # up to `ladder_rungs` points spread over its length (`length_ladder`), so one prompt appears with many
    # answer lengths and only the length markers tell them apart. Natural data hardly has this (a prompt
    # mostly fixes its answer's length); three bands alone taught three clusters, not a number
    # (docs/smollm2-demo-experiments.md no. 7).
    contrast_rows: int = 0
    ladder_rungs: int = 4
    ladder_min_words: int = 5
    rows_per_language: int = 0  # rows of each bundled non-English language (0: English only)
    max_multilingual_chars: int = 600  # prompt + response characters of a non-English row
    # Cross-lingual rows (`treasure.crosslingual`): this many parallel XQuAD items, each an English prompt
    # answered once per language below, so only the `language` marker tells the answers apart.
    crosslingual_items: int = 0
    crosslingual_languages: tuple[str, ...] = ("English", "Spanish", "German")
    # --- evaluation only (changing these redoes the evaluate stage, not training; see `DemoConfig.key`)
    eval_prompts: int = 100
    n_adherence_prompts: int = 30
    adherence_modes: tuple[str, ...] = ("controlling", "strict")
    adherence_languages: tuple[str, ...] = ()
    max_new_tokens: int = 200
    batch_size: int = 16
    # A penalty on repeated tokens (1.0: off), the same for every model and row. 1.15 stops the loops of
    # greedy answers but also penalises the end-of-turn token, which the chat template puts in every prompt,
    # so all answers grow (docs/smollm2-demo-experiments.md no. 15): off in the smollm2 recipe.
    repetition_penalty: float = 1.0
    showcase_languages: tuple[str, ...] = ()
    guidance_scales: tuple[float, ...] = ()  # marker guidance G of the extra evaluation rows
    request_languages: tuple[str, ...] = ()  # the paper's language protocol (request in the prompt)


EVAL_FIELDS = frozenset(
    (
        "eval_prompts",
        "n_adherence_prompts",
        "adherence_modes",
        "adherence_languages",
        "max_new_tokens",
        "batch_size",
        "repetition_penalty",
        "showcase_languages",
        "guidance_scales",
        "request_languages",
    )
)


RECIPES: dict[str, DemoRecipe] = {
    "smollm2": DemoRecipe(
        model="smollm2-135m",
        train_recipe="smollm2_demo",
        markers=("language", "length_bucket", "length_tokens", "task"),
        dataset_dropout=0.3,
        marker_dropout=0.3,
        max_prompt_words=40,
        max_response_words=110,
        english_rows=300,
        response_bands=((1, 25), (35, 60), (75, 110)),
        contrast_rows=200,
        crosslingual_items=250,
        eval_prompts=100,
        n_adherence_prompts=20,
        adherence_modes=("controlling",),
        adherence_languages=("Spanish", "German"),
        max_new_tokens=160,
        batch_size=32,
        showcase_languages=("Spanish", "German"),
        guidance_scales=(1.5,),
        request_languages=("Spanish", "German"),
    ),
    "tiny": DemoRecipe(
        model="tiny",
        train_recipe="tiny_demo",
        markers=(
            "code_type",
            "domain",
            "format",
            "language",
            "length_bucket",
            "length_tokens",
            "quality_bucket",
            "source",
            "task",
        ),
        dataset_dropout=0.1,
        marker_dropout=0.2,
        max_prompt_words=60,
        max_response_words=150,
    ),
}

# The demo's recipe trained twice as long (480 steps per model, about 95 minutes in all on 2 cores): what it
# takes here for `long` and the learned +fixed (docs/smollm2-demo-experiments.md no. 16).
RECIPES["smollm2-full"] = replace(RECIPES["smollm2"], train_recipe="smollm2_full")


@dataclass
class DemoConfig:
    """Where the demo writes, its seed and recipe (`smollm2`, `smollm2-full` or `tiny`), and the stage times
    it measured."""

    out_dir: Path | None = field(
        default=None,
        metadata=knob(
            "Where every stage writes (cached); default runs/demo, or runs/demo-RECIPE.", "--output", "-o"
        ),
    )
    seed: int = field(default=0, metadata=knob("Seed for every random step."))
    recipe: str = field(
        default="smollm2",
        metadata=knob(
            f"Demo recipe: {', '.join(RECIPES)} (smollm2: SmolLM2-135M-Instruct, all weights; smollm2-full: "
            "the same, twice the steps; tiny: scratch)."
        ),
    )
    n_prompts: int | None = field(
        default=None, metadata=knob("Prompts per evaluation suite (default: the recipe's).")
    )
    suites: tuple[str, ...] = field(
        default=(
            "length-instruct",
            "win-rate",
            "adherence",
            "language-request",
            "marker-prediction",
            "long-tail",
        ),
        metadata=knob("Evaluation suites the demo runs (comma list)."),
    )
    timings: dict[str, float] = field(default_factory=dict)  # measured stage times (not an option)
    cached: list[str] = field(default_factory=list)  # stages taken from the cache (timed when they ran)

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise TreasureError(f"unknown demo recipe {self.recipe!r}; valid: {', '.join(RECIPES)}")
        if self.out_dir is None:
            self.out_dir = Path("runs/demo" if self.recipe == "smollm2" else f"runs/demo-{self.recipe}")
        self.out_dir = Path(self.out_dir)

    @property
    def spec(self) -> DemoRecipe:
        return RECIPES[self.recipe]

    def key(self, stage: str = "evaluate") -> str:
        """Hash of everything that shapes a stage's outputs: a cached stage with another key is redone.

        The evaluate stage hashes the whole recipe, the train recipe file, seed, prompts and suites; every
        earlier stage leaves the evaluation-only fields (`EVAL_FIELDS`, prompts, suites) out, so a change to
        the evaluation does not retrain the models.
        """
        from treasure.tiny import CONFIG_DIR

        recipe_file = CONFIG_DIR / f"{self.spec.train_recipe}.yaml"
        recipe_text = recipe_file.read_text(encoding="utf-8") if recipe_file.is_file() else ""
        spec = asdict(self.spec)
        parts: list[Any] = [spec, recipe_text, self.seed, self.n_prompts, self.suites]
        if stage != "evaluate":
            parts = [{k: v for k, v in spec.items() if k not in EVAL_FIELDS}, recipe_text, self.seed]
        blob = json.dumps(parts, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
