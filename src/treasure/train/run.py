"""`train(config)`: one run from TRAIN_DIR to MODEL_DIR (work dir, resume, save, metadata), on one process
or several (`accelerate launch`: rank 0 alone writes and reports)."""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate.utils import DistributedType
from rich.console import Console
from trl import SFTTrainer

from treasure import io
from treasure.artifacts import ModelDir, TrainDir, TrainReport
from treasure.errors import TreasureError
from treasure.train.callbacks import InterruptCallback, TrainingInterrupted
from treasure.train.config import CHECKPOINTS, TrainConfig
from treasure.train.trainer import make_trainer
from treasure.train.workdir import last_checkpoint, open_work_dir


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
