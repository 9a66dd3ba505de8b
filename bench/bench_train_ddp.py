"""Benchmark `treasure train` with two processes (DDP on torch's gloo backend, the shipped
`accelerate_ddp.yaml`, `ACCELERATE_USE_CPU=true`) against one process with gradient accumulation 2: the
same global batch, rows, steps and seed; SmolLM2-135M-Instruct with LoRA (r 16, all linear layers).

On this CPU both sides share the same cores: one process with 2 torch threads against two processes with
1 thread each. The ratio is what data parallelism costs or gains when the cores are split between ranks
(gloo's all-reduce of the LoRA gradients, a second copy of the model); on GPUs each rank has its own device.
Rounds alternate (one process, two processes, ...); trained tokens/s are from each run's train.json.

Writes bench/results/train_ddp.json.
Run: `.venv/bin/python bench/bench_train_ddp.py [--steps 8] [--rounds 2]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import datasets

from bench_train_lora import SPEC, marked_rows
from treasure import models
from treasure.train import CONFIG_DIR

RESULTS = Path(__file__).parent / "results" / "train_ddp.json"
ACCELERATE = shutil.which("accelerate", path=str(Path(sys.executable).parent))


def run(command: list[str], threads: int) -> dict:
    """Run one training command; its train.json."""
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": str(threads)}
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(result.stdout[-2000:] + result.stderr[-4000:])
    out = Path(command[command.index("-o") + 1])
    return json.loads((out / "train.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rows", type=int, default=400)
    opts = parser.parse_args()
    if ACCELERATE is None:
        raise SystemExit("accelerate's launcher is not installed")
    datasets.disable_progress_bars()
    base = models.prepare(SPEC.model)
    cores = os.cpu_count() or 2
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        train_dir = marked_rows(work, opts.rows)
        recipe = [
            *("-c", SPEC.train_recipe, "--model", str(base), "--lora", "--no-merge", "--lr", "1e-3"),
            *("--max-steps", str(opts.steps), "--batch-size", "4", "--save-steps", "0"),
            *("--no-eval-before", "--max-eval-rows", "0", "--seed", "0"),
        ]
        single_runs, ddp_runs, reports = [], [], {}
        for round_ in range(opts.rounds):
            one_out, ddp_out = work / f"one-{round_}", work / f"ddp-{round_}"
            single = run(
                [sys.executable, "-m", "treasure", "train", str(train_dir.path), "-o", str(one_out),
                 *recipe, "--gradient-accumulation-steps", "2"],
                threads=cores,
            )  # fmt: skip
            ddp = run(
                [ACCELERATE, "launch", "--config_file", str(CONFIG_DIR / "accelerate_ddp.yaml"),
                 "--num_processes", "2", "--mixed_precision", "no",
                 "-m", "treasure", "train", str(train_dir.path), "-o", str(ddp_out), *recipe],
                threads=max(cores // 2, 1),
            )  # fmt: skip
            single_runs.append(single["train_tokens_per_s"])
            ddp_runs.append(ddp["train_tokens_per_s"])
            reports = {"single": single, "ddp": ddp}
            print(f"round {round_}: one process {single_runs[-1]} tokens/s, two {ddp_runs[-1]}", flush=True)
    result = {
        "tokens_per_s": {
            "one_process_ga2": single_runs,
            "two_processes_ddp": ddp_runs,
            "median_ratio_ddp_vs_one": round(statistics.median(ddp_runs) / statistics.median(single_runs), 3),
        },
        "final_train_loss": {
            "one_process_ga2": reports["single"]["losses"]["final_train"],
            "two_processes_ddp": reports["ddp"]["losses"]["final_train"],
        },
        "setup": {
            "model": SPEC.model,
            "lora": "r 16, all linear layers",
            "rows": opts.rows,
            "steps": opts.steps,
            "rounds": opts.rounds,
            "global_batch": reports["ddp"]["global_batch"],
            "distributed": reports["ddp"]["distributed"],
            "world_size": reports["ddp"]["world_size"],
            "bf16": reports["ddp"]["config"]["bf16"],
            "cpu_cores": cores,
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
