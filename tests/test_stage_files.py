"""A damaged stage file gives one line naming it, never a raw parser error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from treasure.errors import DataError
from treasure.generate import Generator
from treasure.train import TrainConfig, load_train_dir


def test_broken_build_json_is_named(tiny_train_dir: Path, tmp_path: Path) -> None:
    train_dir = shutil.copytree(tiny_train_dir, tmp_path / "t")
    (train_dir / "build.json").write_text("{broken", encoding="utf-8")
    with pytest.raises(DataError, match=r"t/build\.json:1: not valid JSON"):
        load_train_dir(train_dir)


def test_damaged_arrow_file_is_named(tiny_train_dir: Path, tmp_path: Path) -> None:
    train_dir = shutil.copytree(tiny_train_dir, tmp_path / "t")
    arrow = next((train_dir / "train").glob("data-*.arrow"))
    arrow.write_bytes(b"garbage" * 100)
    with pytest.raises(DataError, match=r"t/train: "):
        load_train_dir(train_dir)


@pytest.mark.parametrize("name", ["train.json", "build.json"])
def test_broken_model_dir_json_is_named(tiny_model_dir: Path, tmp_path: Path, name: str) -> None:
    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "m")
    (model_dir / name).write_bytes(b"\xff\xfe not json")
    with pytest.raises(DataError, match=rf"m/{name}: not UTF-8"):
        Generator.from_model_dir(model_dir)


def test_train_config_needs_an_output_dir(tiny_train_dir: Path) -> None:
    from treasure.errors import TreasureError
    from treasure.train import train

    with pytest.raises(TreasureError, match="output dir"):
        train(TrainConfig(train_dir=tiny_train_dir))
