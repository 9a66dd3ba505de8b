"""A run's work dir: where it writes until it finishes (checkpoints included), and resuming from it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from transformers.trainer import TRAINER_STATE_NAME

from treasure.errors import TreasureError
from treasure.train.config import CHECKPOINTS, TrainConfig


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
