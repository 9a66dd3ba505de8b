"""The trainer: model and tokenizer, rows as prompt/completion pairs, the decision-weighted `SFTTrainer`
and treasure's `group_by_prompt` sampler (`make_trainer`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PrinterCallback,
    ProgressCallback,
)
from trl import SFTTrainer

from treasure import models, quiet
from treasure.artifacts import TrainDir
from treasure.decision_loss import DecisionTokens, weighted_loss
from treasure.errors import TreasureError
from treasure.prompt_batches import GROUP_BY_PROMPT, PromptGroupedSampler, prompt_key
from treasure.taxonomy import Taxonomy
from treasure.tiny import (
    CHAT_TEMPLATE,
    END,
    TokenizerConfig,
    load_size,
    make_model,
    train_tokenizer,
)
from treasure.train.callbacks import InterruptCallback, ThroughputCallback, TrainProgress
from treasure.train.config import CHECKPOINTS, TrainConfig, training_args
from treasure.train.workdir import work_dir


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
