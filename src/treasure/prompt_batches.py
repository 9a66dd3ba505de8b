"""Training batches that keep the rows of one prompt together (`train_sampling_strategy: group_by_prompt`).

A length ladder is one prompt with its answer cut at several lengths, a cross-lingual item one question
answered in several languages: only the markers tell their answers apart. A random sampler spreads such rows
over the epoch, so one step pushes the shared decision (stop or go on, which language) one way and a later
step the other, and a small model can fit that as a drifting bias instead of reading the marker. In one
batch their gradients meet in the same step, and what is left of them is the part that reads the marker.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from typing import Any

from torch.utils.data import Sampler

from treasure import template

GROUP_BY_PROMPT = "group_by_prompt"  # the `train_sampling_strategy` value that selects this sampler


def prompt_key(turns: Sequence[dict[str, Any]]) -> str:
    """The prompt's turns with their marker blocks removed: rows that differ only in markers share it."""
    return json.dumps(
        [(turn["role"], template.parse_prompt(turn["content"]).response) for turn in turns],
        ensure_ascii=False,
    )


class PromptGroupedSampler(Sampler[int]):
    """Row indices in batches of `batch_size` where rows with the same key share a batch (a group larger
    than a batch fills whole batches first). Groups come in a random order drawn from `seed` and the epoch,
    and are packed first-fit, so every batch but the last few is full; each index comes once per epoch."""

    def __init__(self, keys: Sequence[str], batch_size: int, seed: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        groups: dict[str, list[int]] = {}
        for index, key in enumerate(keys):
            groups.setdefault(key, []).append(index)
        self.groups = list(groups.values())
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        self.size = len(keys)

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose order `__iter__` draws (the trainer sets it before each epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def batches(self) -> list[list[int]]:
        """This epoch's batches, in the order they are trained."""
        rng = random.Random(f"{self.seed}:{self.epoch}")
        groups = list(self.groups)  # the order is drawn; the groups themselves are only sliced
        rng.shuffle(groups)
        size = self.batch_size
        chunks = [group[i : i + size] for group in groups for i in range(0, len(group), size)]
        full: list[list[int]] = []
        open_batches: list[list[int]] = []
        for chunk in chunks:
            batch = next((b for b in open_batches if len(b) + len(chunk) <= size), None)
            if batch is None:
                batch = []
                open_batches.append(batch)
            batch.extend(chunk)
            if len(batch) == size:
                open_batches.remove(batch)
                full.append(batch)
        return full + open_batches

    def __iter__(self) -> Iterator[int]:
        for batch in self.batches():
            yield from batch
