"""`TrainConfig`: one training run, TRL's `SFTConfig` with treasure's own fields; the shipped recipes
(discovered from `configs/*.yaml`) and the trainer's args derived from a config."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
)
from trl import SFTConfig

from treasure.errors import TreasureError
from treasure.knobs import check_keys, knob, load_config_file
from treasure.precision import default_bf16
from treasure.prompt_batches import GROUP_BY_PROMPT
from treasure.tiny import (
    CONFIG_DIR,
    MARKER_TOKENS,
    SIZE_FILES,
)

CHECKPOINTS = "checkpoints"
# The shipped training recipes: every YAML in configs/ but the tiny model's sizes and accelerate's configs
TRAIN_RECIPES = tuple(
    sorted(
        path.stem
        for path in CONFIG_DIR.glob("*.yaml")
        if path.name not in SIZE_FILES.values() and not path.stem.startswith("accelerate_")
    )
)
# `--model PATH` without a recipe: LoRA with the settings that made length learnable, by the model's size
SMALL_MODEL_PARAMETERS = 1_000_000_000
SIZE_RECIPES = ("lora_small", "lora_7b")  # below SMALL_MODEL_PARAMETERS, and from it on
# What happens to a row longer than max_length: TRL keeps its start (the answer's end and the end-of-turn
# token are lost, so the model never sees where a long answer stops), or the row is left out.
LONG_ROWS = ("truncate", "drop")
# transformers' samplers (read from its TrainingArguments), and treasure's: rows that differ only in their
# markers share a batch
SAMPLING_STRATEGIES = (
    *SFTConfig.__dataclass_fields__["train_sampling_strategy"].metadata["choices"],
    GROUP_BY_PROMPT,
)
# transformers 5.20 renamed `gradient_checkpointing` to `activation_checkpointing` (the old name stays as a
# deprecated alias); vLLM's CPU build pins an older transformers that has only the old name.
HAS_ACTIVATION_CHECKPOINTING = "activation_checkpointing" in SFTConfig.__dataclass_fields__
# Keys of recipes written before TrainConfig extended SFTConfig: named in the error, never translated.
RENAMED = {
    "batch_size": "per_device_train_batch_size",
    "eval_batch_size": "per_device_eval_batch_size",
    "warmup": "warmup_steps",
    "group_by_length": "train_sampling_strategy: group_by_length",
    "sft_args": "the SFTConfig fields themselves",
}


@dataclass
class TrainConfig(SFTConfig):
    """One training run: treasure's own fields, and TRL's `SFTConfig` (with `TrainingArguments`) under its
    own field names. Fields with `knob` metadata are `treasure train` options; a recipe YAML (`from_file`)
    may set any field. Where treasure wants another default than SFTConfig's (CPU-friendly: no gradient
    checkpointing, bf16 only where the GPU or CPU computes it natively, length-grouped batches, no
    reporting) the field is declared again here, as SFTConfig itself does with TrainingArguments' fields.

    `output_dir` is MODEL_DIR. The trainer gets `training_args(config, …)`: this config with the run's
    checkpoint dir as `output_dir` and the strategies that follow from `eval_steps` and `save_steps`.
    """

    # treasure's own fields
    train_dir: Path | None = None  # TRAIN_DIR (the command's argument)
    output_dir: Path | None = None  # MODEL_DIR (`-o`); the trainer's checkpoints go to its work dir
    model: str = field(
        default="tiny",
        metadata=knob(
            "Registry name (tiny, smollm2-135m; `treasure models list`) or a local HF causal LM dir "
            "(default: the recipe's, else tiny)."
        ),
    )
    size: str = field(
        default="tiny",
        metadata=knob("Size of --model tiny: tiny, tiny_test or a YAML of Llama config keys."),
    )
    vocab_size: int | None = field(
        default=None, metadata=knob("Tokenizer vocabulary of --model tiny (default: the size's).")
    )
    marker_tokens: str = field(
        default="lines",
        metadata=knob("Marker tokens of --model tiny's tokenizer: none, tags (template tags) or lines."),
    )
    eval_before: bool = field(default=True, metadata=knob("Evaluate the validation rows before training."))
    keep_checkpoints: bool = field(
        default=False, metadata=knob("Keep the checkpoints (MODEL_DIR/checkpoints/) after the run.")
    )
    resume: bool = field(
        default=False, metadata=knob("Continue an interrupted run into MODEL_DIR from its last checkpoint.")
    )
    overwrite: bool = field(
        default=False, metadata=knob("Replace an existing MODEL_DIR (kept until the new one is complete).")
    )
    max_train_rows: int | None = field(
        default=None, metadata=knob("Train on the first N training rows only (default: all).")
    )
    max_eval_rows: int | None = field(
        default=256,
        metadata=knob("Validation rows evaluated; also the training rows the final train loss is taken on."),
    )
    long_rows: str = field(
        default="truncate",
        metadata=knob("Rows longer than --max-length: truncate (TRL keeps their start) or drop."),
    )
    decision_weight: float = field(
        default=1.0,
        metadata=knob(
            "Loss weight of the answer's stop/continue decisions (the token after each sentence or line "
            "end, and the end of turn) relative to other tokens; above 1, length markers are learned in "
            "fewer steps (1: plain SFT loss)."
        ),
    )
    lora: bool = field(default=False, metadata=knob("Train LoRA adapters (PEFT) instead of all weights."))
    lora_r: int = field(default=16, metadata=knob("LoRA rank."))
    lora_alpha: int = field(default=32, metadata=knob("LoRA alpha (scale = alpha / r)."))
    lora_dropout: float = field(default=0.05, metadata=knob("Dropout on the LoRA layers' input."))
    lora_target_modules: str | list[str] = "all-linear"  # PEFT's target_modules (recipe key)
    merge: bool = field(default=False, metadata=knob("With --lora: save merged weights, not the adapter."))

    # SFTConfig / TrainingArguments fields: options, or defaults that differ from SFTConfig's
    max_length: int = field(default=256, metadata=knob("Tokens per row (longer rows: see --long-rows)."))
    max_steps: int = field(default=-1, metadata=knob("Optimizer steps (-1: use --epochs)."))
    num_train_epochs: float = field(default=1.0, metadata=knob("Epochs when --max-steps is -1.", "--epochs"))
    per_device_train_batch_size: int = field(
        default=16, metadata=knob("Training rows per batch and device.", "--batch-size")
    )
    per_device_eval_batch_size: int = field(
        default=32, metadata=knob("Evaluation rows per batch and device.", "--eval-batch-size")
    )
    gradient_accumulation_steps: int = field(default=1, metadata=knob("Batches per optimizer step."))
    learning_rate: float = field(default=1e-3, metadata=knob("Peak learning rate.", "--lr"))
    lr_scheduler_type: str = field(
        default="cosine",
        metadata=knob("Learning-rate schedule (cosine, linear, constant, …)."),
    )
    warmup_steps: float = field(
        default=0.05, metadata=knob("Warmup steps; below 1, a fraction of the run's steps.")
    )
    seed: int = field(default=0, metadata=knob("Seed of init, data order and dropout layers."))
    logging_steps: float = field(default=10, metadata=knob("Log loss and tokens/s every N steps."))
    eval_steps: int = field(
        default=0, metadata=knob("Evaluate every N steps (0: only before and after training).")
    )
    save_steps: int = field(default=200, metadata=knob("Checkpoint every N steps (0: none)."))
    save_total_limit: int | None = 2
    bf16: bool | None = field(
        default=None,
        metadata=knob(
            "bf16 mixed precision (default: on with a bf16-capable GPU, or on a CPU with native bf16: "
            "AVX512-BF16 or AMX; fp32 elsewhere and for the from-scratch tiny model)."
        ),
    )
    gradient_checkpointing: bool | None = field(
        default=None,
        metadata=knob(
            "Recompute activations in the backward pass: less memory, slower (transformers ≥ 5.20 calls "
            "it activation_checkpointing; either name works)."
        ),
    )
    train_sampling_strategy: str = field(
        default="group_by_length",
        metadata=knob(
            "Batches: random, group_by_length (less padding), or group_by_prompt (rows whose prompts differ "
            "only in markers share a batch, so length ladders and cross-lingual rows meet in one step)."
        ),
    )
    include_num_input_tokens_seen: str | bool = "non_padding"
    # Every trained parameter takes part in each forward pass (LoRA's frozen ones are not DDP's): without
    # this, transformers asks DDP to search for unused ones, an extra graph walk per step and a warning.
    ddp_find_unused_parameters: bool | None = False
    dataloader_pin_memory: bool = field(default_factory=torch.cuda.is_available)  # pinning needs a GPU
    report_to: str = field(
        default="none", metadata=knob("none, tensorboard, wandb or mlflow (passed to the trainer).")
    )

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be {rule}, got {getattr(self, name)!r}"
            for name, ok, rule in (
                ("long_rows", self.long_rows in LONG_ROWS, " or ".join(LONG_ROWS)),
                (
                    "train_sampling_strategy",
                    self.train_sampling_strategy in SAMPLING_STRATEGIES,
                    ", ".join(SAMPLING_STRATEGIES),
                ),
                ("marker_tokens", self.marker_tokens in MARKER_TOKENS, ", ".join(MARKER_TOKENS)),
                ("merge", not self.merge or self.lora, "false without lora (it merges LoRA adapters)"),
                ("max_length", isinstance(self.max_length, int) and self.max_length >= 1, "at least 1"),
                ("decision_weight", self.decision_weight > 0, "above 0"),
                ("lora_r", self.lora_r >= 1, "at least 1"),
                ("lora_dropout", 0 <= self.lora_dropout < 1, "in [0, 1)"),
                ("max_train_rows", self.max_train_rows is None or self.max_train_rows >= 1, "at least 1"),
                ("max_eval_rows", self.max_eval_rows is None or self.max_eval_rows >= 0, "0 or more"),
                ("eval_steps", (self.eval_steps or 0) >= 0, "0 (off) or more"),
                ("save_steps", (self.save_steps or 0) >= 0, "0 (off) or more"),
            )
            if not ok
        ]
        if problems:
            raise TreasureError("invalid train options: " + "; ".join(problems))
        if self.bf16 is None:  # the from-scratch tiny model stays fp32: its length test fails in bf16
            self.bf16 = default_bf16() and self.model != "tiny"
        if self.bf16 and not torch.cuda.is_available():
            self.use_cpu = True  # the trainer then autocasts to bf16 on the CPU
        if HAS_ACTIVATION_CHECKPOINTING:  # the new name wins; `gradient_checkpointing` then mirrors it
            if self.activation_checkpointing is None:
                self.activation_checkpointing = bool(self.gradient_checkpointing)
        elif self.gradient_checkpointing is None:
            self.gradient_checkpointing = False
        model_dir = self.output_dir  # TrainingArguments makes None "trainer_output"
        try:
            super().__post_init__()
        except (TypeError, ValueError) as exc:
            raise TreasureError(f"invalid SFTConfig option: {exc}") from None
        self.output_dir = model_dir

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """Load a recipe YAML (a shipped preset name or a path); `overrides` (not None) win."""
        data = cls.recipe(path)
        data.update({k: v for k, v in overrides.items() if v is not None})
        check_fields(data, "overrides")
        return cls(**data)

    @staticmethod
    def recipe(path: str | Path) -> dict[str, Any]:
        """The field values a recipe YAML (a shipped preset name or a path) sets, keys checked and typed."""
        file = CONFIG_DIR / f"{path}.yaml" if str(path) in TRAIN_RECIPES else Path(path)
        if not file.is_file():
            raise TreasureError(f"{path}: config not found; shipped recipes: {', '.join(TRAIN_RECIPES)}")
        return load_config_file(TrainConfig, file, RENAMED)

    def summary(self) -> dict[str, Any]:
        """The config as JSON for train.json: every field declared in TrainConfig (treasure's own and the
        SFTConfig defaults it changes), and the other SFTConfig fields that differ from SFTConfig's
        defaults (compared after TrainingArguments has normalised both)."""
        own = set(inspect.get_annotations(TrainConfig))
        reference = _sft_defaults()
        kept = {
            name: value
            for name, value in self.to_dict().items()
            if name in own or value != reference.get(name, ...)
        }
        return json.loads(json.dumps(kept, default=str))


@functools.cache
def _sft_defaults() -> dict[str, Any]:
    """`SFTConfig()`'s fields (bf16 and checkpointing off: an SFTConfig asks for both by default, and
    bf16 is refused without a GPU; TrainConfig declares both, so they are recorded anyway)."""
    checkpointing = "activation_checkpointing" if HAS_ACTIVATION_CHECKPOINTING else "gradient_checkpointing"
    return SFTConfig(bf16=False, **{checkpointing: False}).to_dict()


def count_parameters(model_dir: str | Path) -> int:
    """Parameters of the causal LM that `model_dir/config.json` describes, counted on the meta device: no
    weight is read or allocated."""
    try:
        config = AutoConfig.from_pretrained(model_dir)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except (OSError, ValueError, KeyError) as exc:
        raise TreasureError(
            f"{Path(model_dir) / 'config.json'}: cannot tell the model's size ({exc}); pass --config RECIPE"
        ) from None
    return sum(p.numel() for p in model.parameters())


def recipe_for_size(model_dir: str | Path) -> tuple[str, int]:
    """The preset for a local model dir without a recipe (by parameter count), and the count."""
    parameters = count_parameters(model_dir)
    return SIZE_RECIPES[parameters >= SMALL_MODEL_PARAMETERS], parameters


def check_fields(data: dict[str, Any], where: str) -> None:
    """Every key must be a TrainConfig (or inherited SFTConfig) field; old recipe keys get their new name."""
    check_keys(TrainConfig, data, where, RENAMED)


def training_args(config: TrainConfig, checkpoints: Path, has_eval: bool) -> TrainConfig:
    """The trainer's args: `config` with what depends on the run. Checkpoints go to the work dir; with the
    default strategies, evaluation runs every `eval_steps` (0: never during training, nor without
    validation rows) and a checkpoint is saved every `save_steps` (0: none); the data order follows `seed`
    unless `data_seed` is set."""
    eval_strategy, save_strategy = config.eval_strategy, config.save_strategy
    if eval_strategy == "no" or not has_eval:
        eval_strategy = "steps" if config.eval_steps and has_eval else "no"
    if save_strategy == "steps" and not config.save_steps:
        save_strategy = "no"
    return dataclasses.replace(
        config,
        output_dir=str(checkpoints),
        eval_strategy=eval_strategy,
        eval_steps=config.eval_steps or None,
        save_strategy=save_strategy,
        save_steps=config.save_steps or 500,
        data_seed=config.seed if config.data_seed is None else config.data_seed,
    )
