"""`treasure train`: SFT with TRL's `SFTTrainer` on a built TRAIN_DIR; writes a self-contained MODEL_DIR.

Each row becomes a conversational prompt/completion pair (`prompt` = the turns before the answer,
`completion` = [assistant turn]); TRL then masks the prompt (`completion_only_loss`, on by default for
prompt/completion data), so the loss covers the whole assistant turn, template included.
Multi-GPU: `accelerate launch -m treasure train TRAIN_DIR -o MODEL_DIR ...` (`treasure.__main__`).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import os
import random
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from accelerate.utils import DistributedType
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PrinterCallback,
    ProgressCallback,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)
from transformers.trainer import TRAINER_STATE_NAME
from trl import SFTConfig, SFTTrainer

from treasure import io, models, quiet
from treasure.artifacts import ModelDir, TrainDir, TrainReport
from treasure.decision_loss import DecisionTokens, weighted_loss
from treasure.errors import TreasureError
from treasure.knobs import check_keys, knob, load_config_file
from treasure.precision import default_bf16
from treasure.prompt_batches import GROUP_BY_PROMPT, PromptGroupedSampler, prompt_key
from treasure.taxonomy import Taxonomy
from treasure.tiny import (
    CHAT_TEMPLATE,
    CONFIG_DIR,
    END,
    MARKER_TOKENS,
    SIZE_FILES,
    TokenizerConfig,
    load_size,
    make_model,
    train_tokenizer,
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
# transformers' samplers, and treasure's: rows that differ only in their markers share a batch
SAMPLING_STRATEGIES = ("random", "sequential", "group_by_length", "batch_rebalance", GROUP_BY_PROMPT)
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


class TrainingInterrupted(TreasureError):
    """Ctrl-C stopped training; a checkpoint was saved and `--resume` continues from it."""


class ThroughputCallback(TrainerCallback):
    """Adds `tokens_per_s` (non-padding tokens trained since the last log) to every training log line."""

    def __init__(self) -> None:
        self.last: tuple[float, int] | None = None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ):
        self.last = (time.perf_counter(), state.num_input_tokens_seen)

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs=None, **kw):
        if self.last is None or logs is None or "loss" not in logs:
            return
        now, seen = time.perf_counter(), state.num_input_tokens_seen
        elapsed = now - self.last[0]
        if elapsed > 0:
            logs["tokens_per_s"] = round((seen - self.last[1]) / elapsed, 1)
        self.last = (now, seen)


class TrainProgress(TrainerCallback):
    """One rich progress line for a training run (steps, last loss, tokens/s, time left), on rank 0."""

    def __init__(self) -> None:
        self.progress: Progress | None = None
        self.task: Any = None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw):
        if not state.is_world_process_zero:
            return
        self.progress = Progress(
            TextColumn("train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]} · {task.fields[rate]} tokens/s"),
            TimeRemainingColumn(),
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=state.max_steps, loss="-", rate="-")
        self.progress.update(self.task, completed=state.global_step)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs=None, **kw):
        if self.progress is None or not logs:
            return
        if "loss" in logs:
            self.progress.update(self.task, loss=f"{logs['loss']:.3f}")
        if "tokens_per_s" in logs:
            self.progress.update(self.task, rate=f"{logs['tokens_per_s']:.0f}")

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class InterruptCallback(TrainerCallback):
    """On Ctrl-C (SIGINT) finish the current step, save a checkpoint and stop; a second Ctrl-C kills."""

    def __init__(self) -> None:
        self.interrupted = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        self.interrupted = True
        signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._previous = None

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any):
        if self.interrupted:
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any):
        if self._previous is not None and not self.interrupted:
            signal.signal(signal.SIGINT, self._previous)


def to_prompt_completion(ds: datasets.Dataset) -> datasets.Dataset:
    """Conversational prompt/completion rows: every turn before the last, and the last (assistant) turn."""

    def split(row: dict[str, Any]) -> dict[str, Any]:
        return {"prompt": row["messages"][:-1], "completion": row["messages"][-1:]}

    return ds.map(split, remove_columns=ds.column_names)


def prepare_model(
    config: TrainConfig, train_ds: datasets.Dataset, tax: Taxonomy, out: Path
) -> tuple[Any, PreTrainedModel]:
    """Tokenizer and model: the tiny pair (tokenizer trained on the data, saved first) or a local HF dir."""
    if config.model == "tiny":
        size = load_size(config.size)
        if config.resume and (out / "tokenizer.json").is_file():
            tokenizer = AutoTokenizer.from_pretrained(out)
        else:
            texts = (m["content"] for msgs in train_ds["messages"] for m in msgs)
            tok_config = TokenizerConfig(
                vocab_size=config.vocab_size or size.get("vocab_size", 8000),
                marker_tokens=config.marker_tokens,  # type: ignore[arg-type]
            )
            tokenizer = train_tokenizer(texts, tax, tok_config)
            tokenizer.save_pretrained(out)
        return tokenizer, make_model(tokenizer, size, config.seed)
    path = Path(models.resolve(config.model))
    if not (path / "config.json").is_file():
        raise TreasureError(
            f"model {path}: not a local HF model dir (no config.json); or use a registry name"
        )
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE.replace(END, tokenizer.eos_token)
    # On a GPU the weights load in bf16; on the CPU they stay fp32 and the trainer autocasts to bf16.
    dtype = torch.bfloat16 if config.bf16 and torch.cuda.is_available() else None
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model


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


def _peft_config(config: TrainConfig) -> Any:
    if not config.lora:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_target_modules,
        task_type="CAUSAL_LM",
    )


def row_lengths(rows: datasets.Dataset, tokenizer: Any) -> list[int]:
    """Tokens of each prompt/completion row as the trainer sees it (chat template applied)."""
    if len(rows) == 0:
        return []
    texts = [
        tokenizer.apply_chat_template([*row["prompt"], *row["completion"]], tokenize=False) for row in rows
    ]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def work_dir(out: Path) -> Path:
    """Where a run into `out` writes until it finishes (checkpoints included): a hidden sibling."""
    return out.parent / f".{out.name}.partial"


def last_checkpoint(out: Path) -> str | None:
    """The newest complete checkpoint an unfinished run into `out` left in its work dir, if any.

    The trainer writes `trainer_state.json` last, so a checkpoint without a readable one was cut short
    (SIGKILL, power loss) and is skipped: the run resumes from the one before it."""
    checkpoints = work_dir(out) / CHECKPOINTS
    if not checkpoints.is_dir():
        return None
    complete = [path for path in checkpoints.glob("checkpoint-*") if _complete(path)]
    return str(max(complete, key=lambda p: int(p.name.split("-")[-1]))) if complete else None


def _complete(checkpoint: Path) -> bool:
    if not checkpoint.is_dir() or not checkpoint.name.split("-")[-1].isdigit():
        return False
    try:
        json.loads((checkpoint / TRAINER_STATE_NAME).read_text())
    except (OSError, ValueError):
        return False
    return True


def open_work_dir(config: TrainConfig, out: Path) -> Path:
    """Check `out` and the run's work dir against `resume`/`overwrite`; return the work dir, ready."""
    work = work_dir(out)
    checkpoints = work / CHECKPOINTS
    has_checkpoint = last_checkpoint(out) is not None
    if out.exists() and not out.is_dir():
        raise TreasureError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (config.overwrite or config.resume):
        raise TreasureError(
            f"{out}: already holds a model; set `overwrite` to replace it "
            "(the old one stays until the new one is complete)"
        )
    if config.resume and not has_checkpoint:
        raise TreasureError(f"`resume`: no checkpoint under {checkpoints}")
    if has_checkpoint and not config.resume and not config.overwrite:
        raise TreasureError(
            f"{work}: holds checkpoints of an unfinished run into {out}; "
            "set `resume` to continue it, or `overwrite` to start over"
        )
    if not config.resume and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    return work


def make_trainer(config: TrainConfig) -> tuple[SFTTrainer, dict[str, Any]]:
    """An `SFTTrainer` ready to train (tokenizer, model, data, callbacks) and the run's metadata.

    It writes only into the run's work dir (`work_dir(output_dir)`), after the data and every SFT
    option have been checked.
    """
    if config.train_dir is None or config.output_dir is None:
        raise TreasureError("train needs a TRAIN_DIR and an output dir (-o MODEL_DIR)")
    train_dir, out = Path(config.train_dir), Path(config.output_dir)
    work = work_dir(out)
    train_data = TrainDir.load(train_dir)
    train_raw, val_raw = train_data.split("train"), train_data.split("validation")
    if config.max_train_rows is not None:
        train_raw = train_raw.select(range(min(config.max_train_rows, len(train_raw))))
    if config.max_eval_rows is not None:
        val_raw = val_raw.select(range(min(config.max_eval_rows, len(val_raw))))
    tax = train_data.taxonomy
    args = training_args(config, work / CHECKPOINTS, len(val_raw) > 0)  # checked before writing
    work.mkdir(parents=True, exist_ok=True)
    tokenizer, model = prepare_model(config, train_raw, tax, work)
    train_rows, val_rows = to_prompt_completion(train_raw), to_prompt_completion(val_raw)
    lengths = {"train": row_lengths(train_rows, tokenizer), "validation": row_lengths(val_rows, tokenizer)}
    over = {name: sum(n > config.max_length for n in ns) for name, ns in lengths.items()}
    if config.long_rows == "drop":
        train_rows, val_rows = (
            rows.select([i for i, n in enumerate(lengths[name]) if n <= config.max_length])
            for rows, name in ((train_rows, "train"), (val_rows, "validation"))
        )
    if len(train_rows) == 0:
        raise TreasureError(f"{train_dir}: no training row fits max_length={config.max_length} tokens")
    has_eval = len(val_rows) > 0
    if has_eval != (len(val_raw) > 0):
        args = training_args(config, work / CHECKPOINTS, has_eval)
    trainer_class = TreasureSFTTrainer if config.decision_weight == 1 else DecisionWeightedTrainer
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=train_rows,
        eval_dataset=val_rows if has_eval else None,
        processing_class=tokenizer,
        peft_config=_peft_config(config),
    )
    trainer.callback_handler.callbacks.insert(0, ThroughputCallback())
    trainer.add_callback(InterruptCallback())
    if quiet.is_quiet():  # one rich line instead of tqdm and printed log dicts
        for noisy in (ProgressCallback, PrinterCallback):  # quiet logging makes transformers pick the printer
            trainer.remove_callback(noisy)
        trainer.add_callback(TrainProgress())
    meta = {
        "distributed": trainer.accelerator.distributed_type.value,  # read before training resets it
        "train_dir": train_data,
        "out": out,
        "work": work,
        "n_train": len(train_rows),
        "long_rows": {"policy": config.long_rows, "max_length": config.max_length, "over": over},
    }
    return trainer, meta


class TreasureSFTTrainer(SFTTrainer):
    """`SFTTrainer` with treasure's `group_by_prompt` batches (`treasure.prompt_batches`)."""

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        if self.args.train_sampling_strategy != GROUP_BY_PROMPT:
            return super()._get_train_sampler(train_dataset)
        keys = [prompt_key(turns) for turns in self.train_dataset["prompt"]]
        return PromptGroupedSampler(keys, self.args.per_device_train_batch_size, self.args.data_seed)


class DecisionWeightedTrainer(TreasureSFTTrainer):
    """`SFTTrainer` whose loss weighs the answer's stop/continue decisions by `args.decision_weight`
    (`treasure.decision_loss`); train and eval losses are that weighted mean."""

    loss_is_scaled_for_ga = False  # a mean per batch: the Trainer divides by the accumulation steps

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.decision_tokens = DecisionTokens.for_tokenizer(self.processing_class)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # type: ignore[override]
        outputs = model(**{k: v for k, v in inputs.items() if k != "labels"}, use_cache=False)
        weight = self.args.decision_weight
        loss = weighted_loss(outputs.logits, inputs["labels"], self.decision_tokens, weight)
        return (loss, outputs) if return_outputs else loss


def train(config: TrainConfig) -> ModelDir:
    """Train and write MODEL_DIR (HF model + tokenizer, taxonomy.yaml, stats.json, build.json, train.json).

    The run writes into a hidden work dir beside MODEL_DIR and renames it into place only when it has
    finished, so a failed or interrupted run leaves an existing MODEL_DIR as it was.
    """
    if config.output_dir is None:
        raise TreasureError("train needs an output dir (-o MODEL_DIR)")
    out = Path(config.output_dir)
    work = open_work_dir(config, out)
    try:
        trainer, meta = make_trainer(config)
    except BaseException:
        if not (work / CHECKPOINTS).is_dir():
            shutil.rmtree(work, ignore_errors=True)
        raise
    if fsdp_on_cpu(trainer) and trainer.is_world_process_zero():
        Console(stderr=True).print(FSDP_ON_CPU, highlight=False, soft_wrap=True)
    checkpoints = work / CHECKPOINTS
    resume_from = last_checkpoint(out) if config.resume else None
    losses = {"initial_eval": initial_eval(trainer, config, work, resume_from is not None)}
    result = trainer.train(resume_from_checkpoint=resume_from)
    interrupt = next(c for c in trainer.callback_handler.callbacks if isinstance(c, InterruptCallback))
    if interrupt.interrupted:
        last = last_checkpoint(out)
        raise TrainingInterrupted(
            f"interrupted at step {trainer.state.global_step}; checkpoint {last}; "
            "run it again with `resume` set (--resume) to continue"
        )
    if trainer.eval_dataset is not None:
        losses["final_eval"] = trainer.evaluate()["eval_loss"]
    losses["final_train"] = final_train_loss(trainer, config)
    save_model_dir(trainer, config, work)
    model_dir = write_metadata(trainer, config, meta, losses, result.metrics)
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        if not config.keep_checkpoints and checkpoints.is_dir():
            shutil.rmtree(checkpoints)
        (work / INITIAL_EVAL).unlink(missing_ok=True)
        io.replace_dir(work, out)
    trainer.accelerator.wait_for_everyone()
    return dataclasses.replace(model_dir, path=out)


FSDP_ON_CPU = (
    "FSDP asked for (accelerate config), but accelerate shards models only on accelerators (GPU, XPU, NPU, "
    "...): on the CPU these processes train as DDP (gloo), each with the whole model"
)


def fsdp_on_cpu(trainer: SFTTrainer) -> bool:
    """True when `accelerate launch` was asked for FSDP and the processes run without it: accelerate turns
    FSDP on only for accelerator devices, so on the CPU (MULTI_CPU, gloo) the run is plain DDP."""
    asked = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    return asked and trainer.accelerator.distributed_type != DistributedType.FSDP


def is_main_process() -> bool:
    """Whether this is the process that reports (rank 0 of an `accelerate launch`; always alone)."""
    return not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0


INITIAL_EVAL = "initial_eval.pt"


def initial_eval(trainer: SFTTrainer, config: TrainConfig, work: Path, resumed: bool) -> float | None:
    """Validation loss before training (`eval_before`). It is kept in the work dir with the RNG state it
    left behind (evaluating draws random numbers), and a resumed run, which does not evaluate again,
    starts from that state: it then draws the same batches and reports the same loss."""
    record = work / INITIAL_EVAL
    if resumed:
        if not record.is_file():
            return None
        saved = torch.load(record, weights_only=False)
        random.setstate(saved["python"])
        np.random.set_state(saved["numpy"])
        torch.set_rng_state(saved["torch"])
        return saved["loss"]
    if not (config.eval_before and trainer.eval_dataset is not None):
        return None
    loss = trainer.evaluate()["eval_loss"]
    state = {"loss": loss, "python": random.getstate(), "numpy": np.random.get_state()}
    partial = record.with_name(record.name + ".partial")
    torch.save({**state, "torch": torch.get_rng_state()}, partial)
    partial.replace(record)  # a run killed while writing it leaves no half-written record
    return loss


def final_train_loss(trainer: SFTTrainer, config: TrainConfig) -> float:
    """Loss of the trained model on the first `max_eval_rows` training rows (a function of the final
    weights, unlike the last logged loss, whose window a resume splits)."""
    rows = trainer.train_dataset
    rows = rows.select(range(min(config.max_eval_rows or len(rows), len(rows))))
    return trainer.evaluate(eval_dataset=rows, metric_key_prefix="train")["train_loss"]


def save_model_dir(trainer: SFTTrainer, config: TrainConfig, out: Path) -> None:
    """Save model (LoRA adapter, or merged weights with `merge`) and tokenizer in standard HF format."""
    model = trainer.model
    if config.lora and config.merge:
        merged = trainer.accelerator.unwrap_model(model).merge_and_unload()
        if trainer.is_world_process_zero():
            merged.save_pretrained(out)
    else:
        trainer.save_model(str(out))
    if trainer.is_world_process_zero():
        trainer.processing_class.save_pretrained(out)


def write_metadata(
    trainer: SFTTrainer, config: TrainConfig, meta: dict[str, Any], losses: dict[str, Any], metrics: dict
) -> ModelDir:
    """taxonomy.yaml, stats.json, build.json (as in TRAIN_DIR) and train.json beside the weights."""
    train_dir: TrainDir = meta["train_dir"]
    model = trainer.accelerator.unwrap_model(trainer.model)
    report = {
        "config": config.summary(),
        "seed": config.seed,
        "marked": not train_dir.build_report.baseline,
        "data_sha256": train_dir.data_sha256(),
        "train_dir": str(train_dir.path),
        "n_train_rows": meta["n_train"],
        "long_rows": meta["long_rows"],
        "steps": trainer.state.global_step,
        "world_size": trainer.args.world_size,  # processes (accelerate launch --num_processes)
        "distributed": meta["distributed"],  # NO, MULTI_CPU, MULTI_GPU, FSDP, ...
        "global_batch": trainer.args.per_device_train_batch_size
        * trainer.args.gradient_accumulation_steps
        * trainer.args.world_size,
        "losses": losses,
        "train_runtime_s": round(metrics.get("train_runtime", 0.0), 2),
        "train_tokens": trainer.state.num_input_tokens_seen,
        "train_tokens_per_s": round(
            trainer.state.num_input_tokens_seen / max(metrics.get("train_runtime", 1), 1e-9), 1
        ),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "versions": _versions(),
    }
    model_dir = ModelDir(
        meta["work"], train_dir.taxonomy, train_dir.stats, train_dir.build_report, TrainReport(report)
    )
    return model_dir.save() if trainer.is_world_process_zero() else model_dir


def _versions() -> dict[str, str]:
    import peft
    import transformers
    import trl

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "peft": peft.__version__,
    }
