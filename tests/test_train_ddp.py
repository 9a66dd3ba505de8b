"""Training with several processes on the CPU (`accelerate launch --cpu`, torch's gloo backend): what a user
who launches `treasure train` on several GPUs relies on, proven here without one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ACCELERATE = shutil.which("accelerate", path=str(Path(sys.executable).parent))
STEPS = 6
RECIPE = [
    *("-c", "tiny_test", "--max-steps", str(STEPS), "--max-train-rows", "96", "--batch-size", "4"),
    *("--logging-steps", "1", "--save-steps", str(STEPS), "--keep-checkpoints", "--no-eval-before"),
    *("--decision-weight", "10", "--seed", "3"),
]


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def step_losses(model_dir: Path) -> list[float]:
    state = json.loads((model_dir / "checkpoints" / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


@pytest.mark.skipif(ACCELERATE is None, reason="accelerate's launcher is not installed")
def test_two_processes_equal_one_with_gradient_accumulation(tiny_train_dir: Path, tmp_path: Path) -> None:
    single = tmp_path / "single"
    run([sys.executable, "-m", "treasure", "train", str(tiny_train_dir), "-o", str(single), *RECIPE,
         "--gradient-accumulation-steps", "2"])  # fmt: skip
    ddp = tmp_path / "ddp"
    launched = run([str(ACCELERATE), "launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
                    "--mixed_precision", "no", "--dynamo_backend", "no",
                    "-m", "treasure", "train", str(tiny_train_dir), "-o", str(ddp), *RECIPE])  # fmt: skip

    one, two = step_losses(single), step_losses(ddp)
    assert len(one) == len(two) == STEPS
    # the same global batches (rank r takes every other batch, as accumulation takes them in turn), the same
    # decision-weighted loss per batch, averaged the same way: equal up to float summation order
    assert two == pytest.approx(one, rel=2e-3), (one, two)
    assert one[-1] < one[0]

    single_report = json.loads((single / "train.json").read_text())
    ddp_report = json.loads((ddp / "train.json").read_text())
    assert (single_report["world_size"], ddp_report["world_size"]) == (1, 2)
    assert single_report["global_batch"] == ddp_report["global_batch"] == 8
    assert ddp_report["steps"] == STEPS and ddp_report["config"]["decision_weight"] == 10
    # one model dir, written once (rank 0), and one summary line, not one per process
    assert launched.stdout.count(f"trained {ddp}") == 1, launched.stdout
    assert not (tmp_path / ".ddp.partial").exists()
