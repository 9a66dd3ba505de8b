"""Trainer callbacks: tokens/s in the logs, treasure's one-line progress, and Ctrl-C → checkpoint."""

from __future__ import annotations

import signal
import time
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from transformers import (
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from treasure.errors import TreasureError


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
