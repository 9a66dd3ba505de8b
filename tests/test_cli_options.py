"""Commands whose options derive from their config dataclass: the options are exactly the dataclass's knobs
(plus the command's inputs and outputs), each with its help text, and values reach the config."""

from __future__ import annotations

import typer.main

from treasure.build import BuildConfig
from treasure.cli import _register_commands, app
from treasure.cli._from_config import command
from treasure.demo import DemoConfig
from treasure.generate import GenerateConfig
from treasure.knobs import knobs
from treasure.serve import ServeConfig

DERIVED = {  # command: (config class, parameters that are not knobs)
    "build": (BuildConfig, {"annotated", "output", "overwrite"}),
    "serve": (ServeConfig, {"model_dir"}),
    "demo": (DemoConfig, set()),
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
