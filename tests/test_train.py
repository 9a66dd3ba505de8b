"""`treasure train`: label masking, loss goes down, save → load → generate, Ctrl-C + resume, LoRA."""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from treasure import template
from treasure.errors import TreasureError
from treasure.taxonomy import Taxonomy
from treasure.train import (
    HAS_ACTIVATION_CHECKPOINTING,
    TrainConfig,
    TrainingInterrupted,
    last_checkpoint,
    make_trainer,
    train,
    training_args,
    work_dir,
)

PROMPTS = [
    "Write a short story about a cat.",
    "Explain how photosynthesis works.",
    "Give me tips for studying.",
    "Describe the city of Paris.",
    "What is machine learning?",
    "Write a poem about the sea.",
    "How do I bake bread?",
    "Summarize the history of Rome.",
]


def quick(train_dir: Path, out: Path, **overrides) -> TrainConfig:
    """A few-step recipe on the fixture's training set (the tiny_test size, short rows)."""
    base = {
        "train_dir": train_dir,
        "output_dir": out,
        "max_steps": 20,
        "max_train_rows": 400,
        "logging_steps": 5,
    }
    base.update(overrides)
    return TrainConfig.from_file("tiny_test", **base)


def generate(
    model_dir: Path, user_turns: list[str], max_new_tokens: int = 120, prefill: str = ""
) -> list[str]:
    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    texts = [
        tok.apply_chat_template([{"role": "user", "content": u}], add_generation_prompt=True, tokenize=False)
        + prefill
        for u in user_turns
    ]
    batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
    return tok.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)


def test_prompt_tokens_masked_template_tokens_trained(tiny_train_dir: Path, tmp_path: Path) -> None:
    trainer, _ = make_trainer(quick(tiny_train_dir, tmp_path / "m"))
    tok = trainer.processing_class
    assistant_id = tok.convert_tokens_to_ids("<|assistant|>")
    template_id = tok.convert_tokens_to_ids("<TEMPLATE>\n")
    checked = 0
    for row in trainer.train_dataset.select(range(50)):
        ids, labels = row["input_ids"], row["labels"]
        start = ids.index(assistant_id) + 1  # first token of the assistant turn
        assert all(label == -100 for label in labels[:start]), "prompt tokens must not be trained"
        assert ids[start] == template_id and labels[start] == template_id, "the template is trained"
        assert all(label == i for label, i in zip(labels[start:], ids[start:], strict=True))
        checked += ids[:start].count(template_id)  # rows whose prompt also holds a block
    assert checked > 0


def test_fixture_model_saves_loads_and_writes_markers(tiny_model_dir: Path) -> None:
    report = json.loads((tiny_model_dir / "train.json").read_text())
    assert report["marked"] is True and len(report["data_sha256"]) == 64
    assert report["losses"]["final_eval"] < report["losses"]["initial_eval"] - 1.0
    assert (tiny_model_dir / "taxonomy.yaml").is_file() and (tiny_model_dir / "stats.json").is_file()
    tax = Taxonomy.load(tiny_model_dir / "taxonomy.yaml")
    outputs = generate(tiny_model_dir, [template.escape(p) for p in PROMPTS], max_new_tokens=30)
    parsed = [template.parse(o, tax) for o in outputs]
    assert all(p.has_block and p.error is None and "length_bucket" in p.markers for p in parsed), outputs


def test_length_bucket_controls_answer_length(tiny_model_dir: Path) -> None:
    """The bucket in the prompt and at the start of the block (as strict controlling does) sets the length."""
    tax = Taxonomy.load(tiny_model_dir / "taxonomy.yaml")
    medians = {}
    for bucket in ("concise", "long"):
        block = template.render({"length_bucket": bucket}, tax)
        prefill = block[: block.rindex(template.CLOSE)]
        turns = [template.with_prompt_markers(p, {"length_bucket": bucket}, tax) for p in PROMPTS]
        outputs = generate(tiny_model_dir, turns, max_new_tokens=150, prefill=prefill)
        medians[bucket] = statistics.median(
            len(template.parse(prefill + o, tax).response.split()) for o in outputs
        )
    assert medians["long"] >= 1.5 * medians["concise"], medians


@pytest.mark.slow
def test_baseline_fixture_has_no_markers(tiny_baseline_dir: Path) -> None:
    assert json.loads((tiny_baseline_dir / "train.json").read_text())["marked"] is False
    outputs = generate(tiny_baseline_dir, PROMPTS[:4], max_new_tokens=20)
    assert not any("<TEMPLATE>" in o for o in outputs), outputs


class SigintAt(TrainerCallback):
    """Sends this process a real SIGINT at a given step (what Ctrl-C does)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


def train_interrupted(config: TrainConfig, step: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """`train(config)` with a Ctrl-C (SIGINT) at `step`: it must stop with TrainingInterrupted."""
    import treasure.train.run as train_module  # where `train` looks it up

    real = train_module.make_trainer

    def with_sigint(cfg):
        trainer, meta = real(cfg)
        trainer.add_callback(SigintAt(step))
        return trainer, meta

    monkeypatch.setattr(train_module, "make_trainer", with_sigint)
    try:
        with pytest.raises(TrainingInterrupted, match="--resume"):
            train(config)
    finally:
        monkeypatch.setattr(train_module, "make_trainer", real)


@pytest.mark.slow
def test_ctrl_c_saves_checkpoint_and_resume_finishes(
    tiny_train_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    out = tmp_path / "m"
    config = quick(tiny_train_dir, out, max_steps=12, save_steps=100)
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when pytest runs as a background job
    train_interrupted(config, 5, monkeypatch)
    assert signal.getsignal(signal.SIGINT) is before
    checkpoints = work_dir(out) / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("checkpoint-*")) == ["checkpoint-6"]
    assert not out.exists()  # nothing is put at MODEL_DIR before the run has finished
    with pytest.raises(TreasureError, match="set `resume` to continue it"):
        train(quick(tiny_train_dir, out, max_steps=12, save_steps=100))
    with pytest.raises(TreasureError, match="no checkpoint"):
        train(quick(tiny_train_dir, tmp_path / "empty", resume=True))
    config.resume = True
    train(config)
    report = json.loads((out / "train.json").read_text())
    assert report["steps"] == 12
    assert report["losses"]["initial_eval"] is not None  # kept from the first attempt
    assert not (out / "checkpoints").exists() and not work_dir(out).exists()
    assert AutoModelForCausalLM.from_pretrained(out).num_parameters() == report["n_parameters"]


@pytest.mark.slow
def test_twenty_steps_lower_validation_loss(tiny_train_dir: Path, tmp_path: Path) -> None:
    model = train(quick(tiny_train_dir, tmp_path / "m"))
    losses = model.train_report.losses
    assert losses == json.loads((model.path / "train.json").read_text())["losses"]  # what train returns
    assert losses["final_eval"] < losses["initial_eval"] - 0.5, losses


@pytest.mark.slow
@pytest.mark.parametrize("merge", [True, False])
def test_lora_on_a_local_model_dir(
    tiny_model_dir: Path, tiny_train_dir: Path, tmp_path: Path, merge: bool
) -> None:
    out = tmp_path / "lora"
    config = quick(
        tiny_train_dir,
        out,
        model=str(tiny_model_dir),
        lora=True,
        merge=merge,
        max_steps=3,
        lora_r=4,
        lora_alpha=8,
        learning_rate=0.01,
        eval_before=False,
    )
    train(config)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    if merge:
        assert not (out / "adapter_config.json").exists()
        tuned = AutoModelForCausalLM.from_pretrained(out)
        changed = [
            name for name, p in tuned.state_dict().items() if not torch.equal(p, base.state_dict()[name])
        ]
        assert any("q_proj" in n for n in changed) and all("embed" not in n for n in changed)
    else:
        adapter = json.loads((out / "adapter_config.json").read_text())
        assert adapter["r"] == 4 and Path(adapter["base_model_name_or_path"]) == tiny_model_dir
    assert (
        AutoTokenizer.from_pretrained(out).chat_template
        == AutoTokenizer.from_pretrained(tiny_model_dir).chat_template
    )
    assert json.loads((out / "train.json").read_text())["config"]["lora"] is True


def test_config_errors_are_clear(tmp_path: Path) -> None:
    bad = tmp_path / "recipe.yaml"
    bad.write_text("max_stepz: 3\n", encoding="utf-8")
    with pytest.raises(TreasureError, match=r"unknown key\(s\) max_stepz \(did you mean max_steps"):
        TrainConfig.from_file(bad)
    bad.write_text("batch_size: 3\n", encoding="utf-8")  # a recipe from before SFTConfig's names
    with pytest.raises(TreasureError, match=r"batch_size \(did you mean per_device_train_batch_size\?\)"):
        TrainConfig.from_file(bad)
    with pytest.raises(TreasureError, match=r"long_rows must be truncate or drop.*merge must be false"):
        TrainConfig(merge=True, long_rows="cut")
    with pytest.raises(
        TreasureError,
        match=(
            "shipped recipes: full_7b, lora_7b, lora_small, smollm2_demo, smollm2_full, tiny_demo, tiny_test"
        ),
    ):
        TrainConfig.from_file(tmp_path / "missing.yaml")
    with pytest.raises(TreasureError, match="not a training set"):
        train(TrainConfig(train_dir=tmp_path, output_dir=tmp_path / "m"))


def test_gradient_checkpointing_reaches_the_field_the_installed_transformers_reads() -> None:
    assert TrainConfig().gradient_checkpointing is False  # treasure's default (SFTConfig's is True)
    on = TrainConfig(gradient_checkpointing=True)
    assert on.gradient_checkpointing is True
    if HAS_ACTIVATION_CHECKPOINTING:  # transformers >= 5.20; the vLLM venv's 5.19 has only the old name
        assert on.activation_checkpointing is True
        assert TrainConfig(activation_checkpointing=True).gradient_checkpointing is True
    assert TrainConfig.from_file("lora_7b", bf16=False).gradient_checkpointing is True


def test_run_values_are_set_when_the_run_starts_and_the_record_stays_short(tmp_path: Path) -> None:
    config = TrainConfig.from_file("tiny_test", output_dir=tmp_path / "m", eval_steps=5, weight_decay=0.1)
    assert config.output_dir == tmp_path / "m" and config.eval_strategy == "no"
    args = training_args(config, tmp_path / "ckpt", has_eval=True)
    assert args.output_dir == str(tmp_path / "ckpt") and args.data_seed == config.seed == 0
    assert (args.eval_strategy, args.eval_steps, args.save_strategy) == ("steps", 5, "no")  # save_steps: 0
    assert training_args(config, tmp_path / "ckpt", has_eval=False).eval_strategy == "no"
    record = config.summary()
    assert record["per_device_train_batch_size"] == 16 and record["size"] == "tiny_test"  # declared here
    assert record["weight_decay"] == 0.1 and "optim" not in record and "hub_token" not in record


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


@pytest.mark.slow
def test_a_failed_run_leaves_an_existing_model_dir_byte_identical(
    tiny_train_dir: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "m"
    shutil.copytree(tiny_model_dir, out)
    before = _snapshot(out)
    with pytest.raises(TreasureError, match="already holds a model; set `overwrite`"):
        train(quick(tiny_train_dir, out, max_steps=2))
    with pytest.raises(TreasureError, match=r"bogus_field: not a TrainConfig field"):
        quick(tiny_train_dir, out, bogus_field=1)
    with pytest.raises(TreasureError, match=r"invalid SFTConfig option: bogus is not a valid SchedulerType"):
        quick(tiny_train_dir, out, lr_scheduler_type="bogus")
    with pytest.raises(TreasureError, match="neither a registry name"):  # fails once the run has begun
        train(quick(tiny_train_dir, out, max_steps=2, overwrite=True, model=str(tmp_path / "no-model")))
    assert _snapshot(out) == before
    assert not work_dir(out).exists()  # a run that failed before its first checkpoint leaves nothing
    train(quick(tiny_train_dir, out, max_steps=2, overwrite=True))
    assert _snapshot(out) != before
    assert json.loads((out / "train.json").read_text())["steps"] == 2
    assert not list(tmp_path.glob(".m.*"))  # no work dir or old copy left beside it


@pytest.mark.slow
def test_interrupted_then_resumed_equals_uninterrupted(
    tiny_train_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    straight = train(quick(tiny_train_dir, tmp_path / "straight", max_steps=12, save_steps=100)).path
    config = quick(tiny_train_dir, tmp_path / "resumed", max_steps=12, save_steps=100)
    train_interrupted(config, 5, monkeypatch)
    config.resume = True
    resumed = train(config).path
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    diffs = {name: (a[name] - b[name]).abs().max().item() for name in a}
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] == 0.0, (worst, diffs[worst])
    report_a, report_b = (json.loads((d / "train.json").read_text()) for d in (straight, resumed))
    assert report_a["losses"]["initial_eval"] is not None
    for key in ("steps", "losses", "n_train_rows", "data_sha256", "train_tokens"):
        assert report_a[key] == report_b[key], key


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted(tiny_train_dir: Path, tmp_path: Path) -> None:
    """`kill -9` of `treasure train` after a checkpoint, a half-written later checkpoint, then --resume."""

    def recipe(out: Path, **more) -> TrainConfig:
        return TrainConfig.from_file(
            "tiny_test", train_dir=tiny_train_dir, output_dir=out, max_steps=12, save_steps=4, **more
        )

    straight = train(recipe(tmp_path / "straight")).path
    out = tmp_path / "killed"
    command = [
        *(str(Path(sys.executable).parent / "treasure"), "train", str(tiny_train_dir), "-o", str(out)),
        *("--config", "tiny_test", "--max-steps", "12", "--save-steps", "4"),
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = work_dir(out) / "checkpoints"
    try:
        while proc.poll() is None and not (checkpoints / "checkpoint-4" / "trainer_state.json").is_file():
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not out.exists()
    half_written = checkpoints / "checkpoint-8"  # what a kill during the next save leaves
    shutil.rmtree(half_written, ignore_errors=True)
    shutil.copytree(checkpoints / "checkpoint-4", half_written)
    (half_written / "trainer_state.json").write_text('{"global_step": 8, "log_hist')
    assert last_checkpoint(out) == str(checkpoints / "checkpoint-4")
    resumed = train(recipe(out, resume=True)).path
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert max((a[name] - b[name]).abs().max().item() for name in a) == 0.0
    report_a, report_b = (json.loads((d / "train.json").read_text()) for d in (straight, resumed))
    for key in ("steps", "losses", "n_train_rows", "data_sha256", "train_tokens"):
        assert report_a[key] == report_b[key], key


@pytest.mark.slow
def test_the_terminal_is_quiet_unless_verbose(tiny_train_dir: Path, tmp_path: Path) -> None:
    """`treasure train` prints no third-party progress bars or warnings, only treasure's own lines.

    With `--verbose` the same run prints tqdm bars ("Writing model shards … it/s]") and the Trainer's log
    dicts ('train_runtime'); checked by hand, not here, to keep one subprocess run.
    """
    command = [str(Path(sys.executable).parent / "treasure"), "train", str(tiny_train_dir)]
    command += ["-o", str(tmp_path / "m"), "--config", "tiny_test", "--max-steps", "2"]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    log = done.stdout + done.stderr
    noise = ("Tokenizing train dataset", "Map", "it/s]", "Warning", "'train_runtime'", "shards")
    assert not [word for word in noise if word in log], log
    assert "train" in log and "2/2" in log  # treasure's own progress line
