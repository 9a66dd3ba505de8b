"""Commands whose options derive from their config dataclass: the options are exactly the dataclass's knobs
(plus the command's inputs and outputs), each with its help text, and values reach the config."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer.main

from treasure.annotate.classifier import TrainClassifierConfig
from treasure.annotate.pipeline import AnnotateFileConfig
from treasure.annotate.quality import TrainQualityConfig
from treasure.build import BuildConfig
from treasure.cli import _register_commands, app
from treasure.cli._from_config import command
from treasure.demo import DemoConfig
from treasure.errors import TreasureError
from treasure.evaluate.config import EvalConfig
from treasure.generate import GenerateConfig
from treasure.knobs import knobs
from treasure.serve import ServeConfig
from treasure.train import TrainConfig

DERIVED = {  # command: (config class, parameters that are not knobs)
    "annotate": (AnnotateFileConfig, {"input_path", "output", "quiet", "config_file"}),
    "evaluate": (EvalConfig, {"config_file"}),
    "annotate-train quality": (TrainQualityConfig, {"config_file"}),
    "annotate-train classifier": (TrainClassifierConfig, {"config_file"}),
    "build": (BuildConfig, {"annotated", "output", "overwrite", "config_file"}),
    "serve": (ServeConfig, {"model_dir", "config_file"}),
    "demo": (DemoConfig, {"config_file"}),
    "train": (TrainConfig, {"train_dir", "output", "config_file", "sft"}),
    "generate": (
        GenerateConfig,
        {"model_dir", "prompt", "prompts", "marker", "show_markers", "output", "overwrite", "config_file"},
    ),
}

# inspection commands over files: no stage config behind them
WITHOUT_CONFIG = {
    "taxonomy show", "taxonomy validate", "template render", "template parse", "data inspect",
    "models list", "models prepare",
}  # fmt: skip


def _command(name: str):
    _register_commands()
    command = typer.main.get_command(app)
    for word in name.split():
        command = command.commands[word]
    return command


def _names(command, prefix: str = "") -> set[str]:
    if not hasattr(command, "commands"):
        return {prefix}
    return {n for word, sub in command.commands.items() for n in _names(sub, f"{prefix} {word}".strip())}


def test_every_command_derives_from_its_config_or_has_none() -> None:
    _register_commands()
    names = _names(typer.main.get_command(app))
    assert names == set(DERIVED) | WITHOUT_CONFIG
    assert not set(DERIVED) & WITHOUT_CONFIG


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


def _run(config_cls, argv: list[str], **kw):
    seen = []
    test_app = typer.Typer()
    test_app.command("x")(command(config_cls, lambda config: seen.append(config), **kw))
    typer.main.get_command(test_app).main(argv, standalone_mode=False)
    return seen[0]


def test_groups_prefix_nested_knobs_and_keep_the_outer_default(tmp_path: Path) -> None:
    config = _run(
        EvalConfig,
        ["m", "-o", str(tmp_path), "--baseline", "b", "--judge-model", "gpt", "--temperature", "0.5"],
    )
    assert config.judge.model == "gpt" and config.judge.kind == "reward-model"
    # the nested config starts from EvalConfig's default GenerationConfig (200 tokens), not the class's 256
    assert config.generation.temperature == 0.5 and config.generation.max_new_tokens == 200
    assert config.limit_scale == "train" and config.limit_clip == (5, 300)
    config = _run(
        EvalConfig,
        ["m", "-o", "o", "--baseline", "b", "--limit-scale", "1.5", "--limit-clip", "3,40", "--seed", "7"],
    )
    assert config.limit_scale == 1.5 and config.limit_clip == (3, 40) and config.generation.seed == 7


def test_optional_group_is_built_only_when_used(tmp_path: Path) -> None:
    config = _run(AnnotateFileConfig, ["--field", "prompt=question", "--source-map", "gpt=Synthetic"])
    assert config.annotate.llm is None and config.fields == {"prompt": "question"}
    assert config.annotate.source.mapping == {"gpt": "Synthetic"}
    argv = [
        "--llm-endpoint",
        "http://x/v1",
        "--llm-model",
        "m",
        "--llm-concurrency",
        "9",
        "--annotators",
        "llm",
    ]
    config = _run(AnnotateFileConfig, argv)
    assert (config.annotate.llm.endpoint, config.annotate.llm.model) == ("http://x/v1", "m")
    assert config.annotate.llm.concurrency == 9 and config.annotate.llm.max_tokens == 96
    with pytest.raises(typer.BadParameter, match="--llm-endpoint and --llm-model go together"):
        _run(AnnotateFileConfig, ["--llm-model", "m"])
    with pytest.raises(typer.BadParameter, match="expected NAME=VALUE"):
        _run(AnnotateFileConfig, ["--field", "prompt"])
    recipe = tmp_path / "annotate.yaml"  # the YAML file and the options complete the optional config together
    recipe.write_text("annotate: {annotators: [rules, llm], llm: {endpoint: 'http://y/v1'}}\n")
    config = _run(AnnotateFileConfig, ["-c", str(recipe), "--llm-model", "m"])
    assert (config.annotate.llm.endpoint, config.annotate.llm.model) == ("http://y/v1", "m")
    with pytest.raises(typer.BadParameter, match=r"go together \(--llm-endpoint was given\)"):
        _run(AnnotateFileConfig, ["-c", str(recipe)])
    # a YAML config gets the same checks as the options: llm settings need the llm annotator
    recipe.write_text("annotate: {annotators: [rules], llm: {endpoint: 'http://y/v1', model: m}}\n")
    with pytest.raises(TreasureError, match="llm annotator is off: add llm to annotators"):
        _run(AnnotateFileConfig, ["-c", str(recipe)])


def test_parse_knob_and_recipe_defaults(tmp_path: Path) -> None:
    from treasure.taxonomy import Taxonomy

    custom = tmp_path / "tax.yaml"
    Taxonomy.default().save(custom)
    assert _run(AnnotateFileConfig, ["-t", str(custom)]).annotate.taxonomy == Taxonomy.load(custom)
    recipe_calls = []

    def recipe(given, extra):
        recipe_calls.append(dict(given))
        return {"seed": 5, "val_fraction": 0.5}

    config = _run(BuildConfig, ["--seed", "9"], recipe=recipe)
    assert recipe_calls == [{"seed": 9}]
    assert config.seed == 9 and config.val_fraction == 0.5  # given beats recipe; recipe beats default


def test_config_file_values_under_given_options(tmp_path: Path) -> None:
    recipe = tmp_path / "eval.yaml"
    recipe.write_text(
        "baseline_dir: base\nn_prompts: 7\nlimit_clip: [3, 30]\nlimit_scale: '2'\n"
        "judge: {kind: openai, endpoint: http://j/v1, model: jm}\n"
        "generation: {max_new_tokens: 64}\nadherence_markers: {language: [French, German]}\n"
    )
    config = _run(EvalConfig, ["m", "-o", "o", "-c", str(recipe), "--n-prompts", "9", "--judge-model", "x"])
    assert config.n_prompts == 9 and config.baseline_dir == Path("base")  # given beats the file
    assert config.limit_clip == (3, 30) and config.limit_scale == 2.0
    assert (config.judge.kind, config.judge.endpoint, config.judge.model) == ("openai", "http://j/v1", "x")
    assert config.generation.max_new_tokens == 64 and config.generation.temperature == 0.0
    assert config.adherence_markers == {"language": ("French", "German")}
    recipe.write_text("judge: {modle: jm}\n")
    unknown = r"eval.yaml: judge: unknown key\(s\) modle \(did you mean model\?\): not a JudgeConfig field"
    with pytest.raises(TreasureError, match=unknown):
        _run(EvalConfig, ["m", "-o", "o", "-c", str(recipe)])
    recipe.write_text("n_prompts: [\n")
    with pytest.raises(TreasureError, match=r"eval\.yaml: not valid YAML"):
        _run(EvalConfig, ["m", "-o", "o", "-c", str(recipe)])


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
    with pytest.raises(TreasureError, match=r"--sft: unknown key\(s\) bogus_field: not a TrainConfig field"):
        train.main([*io, "--sft", "bogus_field=1"], standalone_mode=False)


def test_errors_naming_fields_name_their_options(tmp_path: Path) -> None:
    from treasure.cli.build import IO
    from treasure.errors import DataError

    def fail(config, **_):
        raise TreasureError(
            "a/val_fraction.jsonl: set `overwrite`, or mind val_fraction and judge.model; seed is a word"
        )

    test_app = typer.Typer()
    test_app.command("x")(command(BuildConfig, fail, extra=IO))
    with pytest.raises(TreasureError) as error:
        typer.main.get_command(test_app).main(["in.jsonl", "-o", str(tmp_path)], standalone_mode=False)
    assert str(error.value) == (  # a path, a plain word and another command's field stay as they are
        "a/val_fraction.jsonl: set --overwrite, or mind --val-fraction and judge.model; seed is a word"
    )

    def reject(config, **_):  # a subclass keeps its type and fields
        raise DataError("in.jsonl", "3 of 4 rows rejected (75.0% > max_reject_rate 1.0%)", raw={"a": 1})

    test_app = typer.Typer()
    test_app.command("x")(command(AnnotateFileConfig, reject))
    with pytest.raises(DataError) as error:
        typer.main.get_command(test_app).main([], standalone_mode=False)
    assert str(error.value) == "in.jsonl: 3 of 4 rows rejected (75.0% > --max-reject-rate 1.0%)"
    assert error.value.raw == {"a": 1}


def test_flat_yaml_keys_reach_their_nested_config(tmp_path: Path) -> None:
    recipe = tmp_path / "annotate.yaml"  # no `annotate:` level: each key names one field
    recipe.write_text(
        "annotators: [rules, llm]\nlength_buckets: taxonomy\nllm_endpoint: http://y/v1\nmodel: m\n"
        "http_retries: 0\nmax_reject_rate: 0.5\n"
    )
    config = _run(AnnotateFileConfig, ["-c", str(recipe)])
    assert config.annotate.annotators == ("rules", "llm") and config.annotate.length_buckets == "taxonomy"
    assert (config.annotate.llm.endpoint, config.annotate.llm.model) == ("http://y/v1", "m")
    assert config.annotate.llm.http_retries == 0 and config.max_reject_rate == 0.5
    recipe.write_text("annotator: [rules]\n")  # the did-you-mean names the field meant, not `annotate`
    with pytest.raises(TreasureError, match=r"annotator \(did you mean annotators or annotate\?\)"):
        _run(AnnotateFileConfig, ["-c", str(recipe)])
    recipe.write_text("annotators: [rules]\nannotate: {annotators: [language]}\n")
    with pytest.raises(TreasureError, match="annotators is given twice"):
        _run(AnnotateFileConfig, ["-c", str(recipe)])
    recipe.write_text("max_new_tokens: 64\nn_prompts: 3\n")  # evaluate: generation.max_new_tokens
    config = _run(EvalConfig, ["m", "-o", "o", "-c", str(recipe)])
    assert config.generation.max_new_tokens == 64 and config.n_prompts == 3


# one vocabulary: each concept has one spelling; these are the other spellings it once had or might get
SYNONYMS = {
    "--out": "--output",
    "--out-dir": "--output",
    "--output-dir": "--output",
    "--suite": "--suites",
    "--eval-prompts": "--n-prompts",
    "--prompts-per-suite": "--n-prompts",
    "--recipe-file": "--config",
}


def _all_commands() -> dict[str, object]:
    _register_commands()
    return {name: _command(name) for name in sorted(_names(typer.main.get_command(app)))}


def _long(param) -> str | None:
    return next((o for o in param.opts if o.startswith("--")), None)


def test_one_spelling_per_concept_across_commands() -> None:
    by_short: dict[str, set[str]] = {}
    by_name: dict[str, set[str]] = {}
    for name, cmd in _all_commands().items():
        for param in cmd.params:
            if param.param_type_name == "argument":
                assert param.metavar and param.metavar == param.metavar.upper(), (name, param.name)
                continue
            long = _long(param)
            assert long not in SYNONYMS, f"{name}: {long} is spelled {SYNONYMS[long]} elsewhere"
            for short in (o for o in param.opts if not o.startswith("--")):
                by_short.setdefault(short, set()).add(long)
            by_name.setdefault(param.name, set()).add(long)
    assert by_short["-o"] == {"--output"}
    assert {s: longs for s, longs in by_short.items() if len(longs) > 1} == {}  # -o is --output everywhere
    assert {n: longs for n, longs in by_name.items() if len(longs) > 1} == {}  # a field has one flag
    outputs = {n for n, cmd in _all_commands().items() if any("--output" in p.opts for p in cmd.params)}
    assert outputs >= {"annotate", "build", "train", "generate", "evaluate", "demo", "annotate-train quality"}


def test_annotate_train_never_writes_into_the_package_by_default() -> None:
    import treasure

    package = Path(treasure.__file__).parent.resolve()
    for config in (TrainClassifierConfig(), TrainQualityConfig()):
        assert not config.out.resolve().is_relative_to(package)
        assert not config.out.is_absolute()  # under the current directory


def test_temperature_defaults_follow_the_documented_policy() -> None:
    """Sampling for users (generate, serve), greedy for measurement (evaluate), as docs/generate.md says."""
    defaults = {
        name: next(k.default for k in knobs(config_cls) if k.name == "temperature")
        for name, (config_cls, _) in DERIVED.items()
        if any(k.name == "temperature" for k in knobs(config_cls))
    }
    assert defaults == {"generate": 0.7, "serve": 0.7, "evaluate": 0.0}
    policy = " ".join((Path(__file__).parents[1] / "docs" / "generate.md").read_text().split())
    assert "(`generate`, `serve`) sample, at temperature 0.7" in policy
    assert "(`evaluate`, and the demo's evaluation) decode greedily, at temperature 0" in policy


def test_train_model_dir_without_a_recipe_gets_one_for_its_size(monkeypatch, tmp_path, capsys) -> None:
    from transformers import LlamaConfig

    import treasure.cli.train as train_cli
    from treasure.train import recipe_for_size

    small, large = tmp_path / "small", tmp_path / "large"
    LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                vocab_size=1000).save_pretrained(small)  # fmt: skip
    LlamaConfig().save_pretrained(large)  # Llama-2-7B's shape; no weights anywhere
    assert recipe_for_size(large)[0] == "lora_7b" and recipe_for_size(large)[1] > 6e9
    seen = []

    def fake_train(config: TrainConfig) -> None:
        seen.append(config)
        raise _Stop

    monkeypatch.setattr(train_cli, "train", fake_train)
    with pytest.raises(_Stop):
        argv = [str(tmp_path / "t"), "-o", str(tmp_path / "m"), "--model", str(small)]
        _command("train").main(argv, standalone_mode=False)
    config = seen[0]
    assert config.lora and config.lora_r == 16 and config.lora_target_modules == "all-linear"
    assert config.learning_rate == 1e-3 and config.decision_weight == 10 and config.long_rows == "drop"
    assert config.train_sampling_strategy == "random" and config.model == str(small)
    printed = " ".join(capsys.readouterr().out.split())
    assert f"recipe: lora_small (--model {small}: 0.2M parameters" in printed
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{}")
    with pytest.raises(TreasureError, match=r"broken/config.json: cannot tell the model's size"):
        recipe_for_size(tmp_path / "broken")
