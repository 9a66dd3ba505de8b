"""Training with several processes on the CPU: the shipped `accelerate_ddp.yaml` launched with two
processes on torch's gloo backend (`ACCELERATE_USE_CPU=true`; accelerate's `--cpu` flag would start one
process only). What a user who launches `treasure train` on several GPUs relies on, proven without one."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from treasure.train import CONFIG_DIR, FSDP_ON_CPU

pytestmark = pytest.mark.slow

ACCELERATE = shutil.which("accelerate", path=str(Path(sys.executable).parent))
STEPS = 24
RECIPE = [
    *("-c", "tiny_test", "--max-steps", str(STEPS), "--max-train-rows", "96", "--batch-size", "4"),
    *("--logging-steps", "1", "--save-steps", "4", "--keep-checkpoints", "--no-eval-before"),
    *("--decision-weight", "10", "--seed", "3"),
]
CPU_ENV = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}


def launch(config: str, train_dir: Path, out: Path, *extra: str) -> list[str]:
    return [str(ACCELERATE), "launch", "--config_file", str(CONFIG_DIR / f"{config}.yaml"),
            "--num_processes", "2", "--mixed_precision", "no",
            "-m", "treasure", "train", str(train_dir), "-o", str(out), *RECIPE, *extra]  # fmt: skip


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=CPU_ENV)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def step_losses(model_dir: Path) -> list[float]:
    state = json.loads((model_dir / "checkpoints" / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def single(train_dir: Path, out: Path, *extra: str) -> Path:
    """One process, gradient accumulation 2: the global batch of two processes."""
    run([sys.executable, "-m", "treasure", "train", str(train_dir), "-o", str(out), *RECIPE,
         "--gradient-accumulation-steps", "2", *extra])  # fmt: skip
    return out


@pytest.mark.skipif(ACCELERATE is None, reason="accelerate's launcher is not installed")
def test_two_processes_equal_one_with_gradient_accumulation(tiny_train_dir: Path, tmp_path: Path) -> None:
    sampling = ("--train-sampling-strategy", "group_by_prompt")  # treasure's own sampler, sharded by rank
    one_process = single(tiny_train_dir, tmp_path / "single", *sampling)
    ddp = tmp_path / "ddp"
    launched = run(launch("accelerate_ddp", tiny_train_dir, ddp, *sampling))

    one, two = step_losses(one_process), step_losses(ddp)
    assert len(one) == len(two) == STEPS
    # rank r takes every other batch, as accumulation takes them in turn; the same decision-weighted loss
    # per batch, averaged the same way (all-reduce vs accumulation): equal up to float summation order
    assert two == pytest.approx(one, rel=2e-3), (one, two)
    assert one[-1] < one[0]

    single_report = json.loads((one_process / "train.json").read_text())
    ddp_report = json.loads((ddp / "train.json").read_text())
    assert (single_report["world_size"], ddp_report["world_size"]) == (1, 2)
    assert (single_report["distributed"], ddp_report["distributed"]) == ("NO", "MULTI_CPU")
    assert single_report["global_batch"] == ddp_report["global_batch"] == 8
    assert ddp_report["steps"] == STEPS and ddp_report["config"]["decision_weight"] == 10
    # one model dir, written once (rank 0), and one summary line, not one per process
    assert launched.stdout.count(f"trained {ddp}") == 1, launched.stdout
    assert "find_unused_parameters" not in launched.stderr
    assert not (tmp_path / ".ddp.partial").exists()


def rank_processes(launcher: subprocess.Popen[str]) -> dict[int, psutil.Process]:
    """The launcher's worker processes by their RANK."""
    ranks = {}
    for child in psutil.Process(launcher.pid).children(recursive=True):
        try:
            rank = child.environ().get("RANK")
        except psutil.Error:
            continue
        if rank is not None and "treasure" in " ".join(child.cmdline()):
            ranks[int(rank)] = child
    return ranks


@pytest.mark.skipif(ACCELERATE is None, reason="accelerate's launcher is not installed")
def test_a_killed_rank_resumes_to_the_same_losses(tiny_train_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    checkpoints = tmp_path / ".ddp.partial" / "checkpoints"
    launcher = subprocess.Popen(
        launch("accelerate_ddp", tiny_train_dir, out, "--save-steps", "2"),
        env=CPU_ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 600
    while not (checkpoints / "checkpoint-4" / "trainer_state.json").is_file():
        assert launcher.poll() is None and time.monotonic() < deadline, launcher.communicate()[0][-3000:]
        time.sleep(0.05)
    os.kill(rank_processes(launcher)[1].pid, signal.SIGKILL)
    log = launcher.communicate(timeout=300)[0]
    assert launcher.returncode != 0, log[-3000:]
    assert not out.exists()  # nothing half-written where the model dir goes
    done = sorted(int(p.name.split("-")[1]) for p in checkpoints.glob("checkpoint-*"))
    assert done and done[-1] < STEPS, done

    run(launch("accelerate_ddp", tiny_train_dir, out, "--save-steps", "2", "--resume"))
    # the resumed run continues from its last checkpoint: the same losses as one uninterrupted process
    uninterrupted = single(tiny_train_dir, tmp_path / "single")
    assert step_losses(out) == pytest.approx(step_losses(uninterrupted), rel=2e-3)
    assert json.loads((out / "train.json").read_text())["steps"] == STEPS


@pytest.mark.skipif(ACCELERATE is None, reason="accelerate's launcher is not installed")
def test_fsdp_on_the_cpu_says_it_runs_as_ddp(tiny_train_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "fsdp"
    launched = run(launch("accelerate_fsdp", tiny_train_dir, out, "--max-steps", "2", "--save-steps", "2"))
    said = " ".join((launched.stdout + launched.stderr).split())
    assert said.count(" ".join(FSDP_ON_CPU.split())) == 1, said[-3000:]
    report = json.loads((out / "train.json").read_text())
    assert (report["world_size"], report["distributed"]) == (2, "MULTI_CPU")
