"""`group_by_prompt` batches: rows whose prompts differ only in markers train in one step."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from treasure import template
from treasure.errors import TreasureError
from treasure.prompt_batches import PromptGroupedSampler, prompt_key
from treasure.train import TrainConfig, make_trainer


def user(text: str, markers: dict | None = None) -> list[dict]:
    return [{"role": "user", "content": template.with_prompt_markers(text, markers or {})}]


def test_prompt_key_ignores_markers_only() -> None:
    bare = prompt_key(user("Why is the sky blue?"))
    assert prompt_key(user("Why is the sky blue?", {"length_bucket": "long"})) == bare
    assert prompt_key(user("Why is the sky blue?", {"language": "Spanish", "length_tokens": 40})) == bare
    assert prompt_key(user("Why is the sea blue?")) != bare
    system = [{"role": "system", "content": "Be brief."}, *user("Why is the sky blue?")]
    assert prompt_key(system) != bare


def ladder_keys(seed: int) -> list[str]:
    """Groups of 1–5 rows (ladders, triples, single rows), shuffled as a built train file is."""
    rng = random.Random(seed)
    keys = [f"prompt {g}" for g in range(120) for _ in range(rng.choice([1, 1, 1, 3, 4, 5]))]
    rng.shuffle(keys)
    return keys


def test_groups_share_a_batch_and_every_row_comes_once() -> None:
    keys = ladder_keys(0)
    sampler = PromptGroupedSampler(keys, batch_size=8, seed=3)
    batches = sampler.batches()
    assert sorted(i for batch in batches for i in batch) == list(range(len(keys)))
    assert list(sampler) == [i for batch in batches for i in batch] and len(sampler) == len(keys)
    where = {}
    for number, batch in enumerate(batches):
        for i in batch:
            assert where.setdefault(keys[i], number) == number, f"{keys[i]} split over two batches"
    # only the last few batches of the packing are short (the data loader's batches are these but for the
    # last few, which it cuts from their concatenation)
    short = [number for number, batch in enumerate(batches) if len(batch) < 8]
    assert len(short) <= 3 and short == list(range(len(batches) - len(short), len(batches)))


def test_a_group_larger_than_a_batch_fills_whole_batches() -> None:
    keys = ["big"] * 11 + [f"single {i}" for i in range(5)]
    batches = PromptGroupedSampler(keys, batch_size=4, seed=0).batches()
    big = [batch for batch in batches if all(keys[i] == "big" for i in batch)]
    assert [len(b) for b in big] == [4, 4], "two whole batches of the big group, its rest packed with others"


def test_order_follows_seed_and_epoch() -> None:
    keys = ladder_keys(1)
    a, b = PromptGroupedSampler(keys, 8, seed=5), PromptGroupedSampler(keys, 8, seed=5)
    assert list(a) == list(b)
    assert list(PromptGroupedSampler(keys, 8, seed=6)) != list(a)
    b.set_epoch(1)
    assert list(b) != list(a)
    a.set_epoch(1)
    assert list(a) == list(b)


def test_trainer_trains_in_the_samplers_batches(tiny_train_dir: Path, tmp_path: Path) -> None:
    config = TrainConfig.from_file(
        "tiny_test",
        train_dir=tiny_train_dir,
        output_dir=tmp_path / "m",
        max_steps=2,
        max_train_rows=64,
        per_device_train_batch_size=4,
        train_sampling_strategy="group_by_prompt",
    )
    trainer, _ = make_trainer(config)
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, PromptGroupedSampler)
    rows = trainer.train_dataset
    assert sorted(i for group in sampler.groups for i in group) == list(range(len(rows)))
    first = next(iter(trainer.get_train_dataloader()))
    expected = [rows[i]["input_ids"] for i in sampler.batches()[0]]
    got = [
        [t for t, m in zip(ids, mask, strict=True) if m]
        for ids, mask in zip(first["input_ids"].tolist(), first["attention_mask"].tolist(), strict=True)
    ]
    assert got == expected


def test_unknown_strategy_is_named() -> None:
    with pytest.raises(TreasureError, match=r"train_sampling_strategy must be random, .*group_by_prompt"):
        TrainConfig(train_sampling_strategy="by_prompt")
