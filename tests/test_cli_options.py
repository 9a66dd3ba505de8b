"""Commands whose options derive from their config dataclass: the options are exactly the dataclass's knobs
(plus the command's inputs and outputs), each with its help text, and values reach the config."""

from __future__ import annotations

import pytest
import typer.main

from treasure.build import BuildConfig
from treasure.cli import _register_commands, app
from treasure.cli._from_config import command
from treasure.demo import DemoConfig
from treasure.errors import TreasureError
from treasure.generate import GenerateConfig
from treasure.knobs import knobs
from treasure.serve import ServeConfig
from treasure.train import TrainConfig

DERIVED = {  # command: (config class, parameters that are not knobs)
    "build": (BuildConfig, {"annotated", "output", "overwrite"}),
    "serve": (ServeConfig, {"model_dir"}),
    "demo": (DemoConfig, set()),
    "train": (TrainConfig, {"train_dir", "output", "recipe", "sft"}),
    "generate": (
        GenerateConfig,
        {"model_dir", "prompt", "prompts", "marker", "show_markers", "out", "overwrite"},
    ),
}


def _command(name: str):
    _register_commands()
    return typer.main.get_command(app).commands[name]


def test_options_are_exactly_the_config_knobs() -> None:
    for name, (config_cls, io) in DERIVED.items():
        params = {p.name for p in _command(name).params}
        assert params == {k.name for k in knobs(config_cls)} | io, name
        assert all(p.help for p in _command(name).params if p.name not in io), name


def test_values_reach_the_config_with_their_types() -> None:
    seen = []
    test_app = typer.Typer()
    test_app.command("serve")(command(ServeConfig, lambda config: seen.append(config)))
    typer.main.get_command(test_app).main(
        ["--temperature", "0", "--drain", "3", "--upstream", "http://x/v1", "--max-queue", "64"],
        standalone_mode=False,
    )
    config = seen[0]
    assert config.generation.temperature == 0.0 and config.drain_s == 3.0 and config.max_queue == 64
    assert config.upstream == "http://x/v1" and config.generation.max_new_tokens == 256
    test_app = typer.Typer()
    test_app.command("build")(command(BuildConfig, lambda config: seen.append(config)))
    typer.main.get_command(test_app).main(
        ["--markers", "task, domain", "--overhead-modes", "lines", "--baseline"], standalone_mode=False
    )
    assert seen[1].markers == ("task", "domain") and seen[1].overhead_modes == ("lines",) and seen[1].baseline


class _Stop(Exception):
    pass


def test_train_options_override_the_recipe_and_keep_its_other_values(monkeypatch, tmp_path) -> None:
    import treasure.cli.train as train_cli

    seen = []

    def fake_train(config: TrainConfig) -> None:
        seen.append(config)
        raise _Stop

    monkeypatch.setattr(train_cli, "train", fake_train)
    io = [str(tmp_path / "t"), "-o", str(tmp_path / "m")]
    train = _command("train")
    with pytest.raises(_Stop):
        options = ["--lr", "0.5", "--batch-size", "4", "--no-eval-before", "--sft", "weight_decay=0.1"]
        train.main([*io, "--config", "tiny_test", *options], standalone_mode=False)
    config = seen[0]
    assert config.learning_rate == 0.5 and config.per_device_train_batch_size == 4  # given: they win
    assert not config.eval_before and config.weight_decay == 0.1
    assert config.max_steps == 200 and config.size == "tiny_test"  # not given: the recipe's
    assert config.per_device_eval_batch_size == 64 and config.warmup_steps == 0.05
    assert config.train_dir == tmp_path / "t" and config.output_dir == tmp_path / "m"
    with pytest.raises(_Stop):
        train.main(io, standalone_mode=False)
    assert seen[1].max_steps == 900 and seen[1].learning_rate == 0.003  # tiny_demo, the tiny model's
    with pytest.raises(TreasureError, match=r"--sft: unknown key\(s\) bogus_field.*not a TrainConfig"):
        train.main([*io, "--sft", "bogus_field=1"], standalone_mode=False)
