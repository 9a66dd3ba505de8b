"""Benchmark bf16 against fp32 on this CPU: the matmul peak, and SmolLM2 training steps.

1. A 2048 x 2048 matmul on the CPU's threads, best of 5, in fp32 and bf16: the GFLOPS peak of each dtype.
2. SmolLM2-135M-Instruct (the demo's base model), LoRA r=16 on all linear layers as in the demo recipe,
   forward + backward + AdamW step on 8 rows x 128 tokens, in fp32 and under
   `torch.autocast("cpu", dtype=torch.bfloat16)`, alternating so background load hits both alike:
   trained tokens/s of each, and each one's share of its dtype's matmul peak
   (6 x trainable-path FLOPs per token is not what LoRA does, so the share is reported as tokens/s per
   GFLOPS of peak, comparable between the two dtypes on one machine).
Also records whether the CPU has native bf16 (AVX512-BF16 or AMX): without it bf16 is emulated and slower.

Writes bench/results/bf16.json. Run: `.venv/bin/python bench/bench_bf16.py [--steps 4] [--rounds 2]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from treasure import models
from treasure.precision import cpu_has_native_bf16

RESULTS = Path(__file__).parent / "results" / "bf16.json"


def matmul_gflops(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """Best-of-`repeats` GFLOPS of one `size` x `size` matmul in `dtype`."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    a @ b  # warm-up
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _timed(work) -> float:
    began = time.perf_counter()
    work()
    return time.perf_counter() - began


def train_tokens_per_s(model, batch: torch.Tensor, steps: int, bf16: bool) -> float:
    """Trained tokens/s of `steps` LoRA steps (forward, backward, AdamW) on `batch`."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    step()  # warm-up
    seconds = sum(_timed(step) for _ in range(steps))
    return batch.numel() * steps / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    native = cpu_has_native_bf16()
    peak = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
    path = models.prepare("smollm2-135m")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
    batch = torch.randint(0, model.config.vocab_size, (8, 128), generator=torch.Generator().manual_seed(0))
    rates: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(args.rounds):
        for name in ("fp32", "bf16"):
            rates[name].append(train_tokens_per_s(model, batch, args.steps, bf16=name == "bf16"))
    median = {name: statistics.median(values) for name, values in rates.items()}
    result = {
        "what": "bf16 vs fp32 on this CPU: 2048^2 matmul peak and SmolLM2 LoRA training tokens/s",
        "command": f".venv/bin/python bench/bench_bf16.py --steps {args.steps} --rounds {args.rounds}",
        "date": time.strftime("%Y-%m-%d"),
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": native,
        "matmul_gflops": {k: round(v, 1) for k, v in peak.items()},
        "matmul_bf16_over_fp32": round(peak["bf16"] / peak["fp32"], 2),
        "train_tokens_per_s": {k: round(v, 1) for k, v in median.items()},
        "train_rounds": {k: [round(v, 1) for v in values] for k, values in rates.items()},
        "train_bf16_over_fp32": round(median["bf16"] / median["fp32"], 2),
        "train_tokens_per_s_per_peak_gflops": {k: round(median[k] / peak[k], 3) for k in median},
        "batch": "8 rows x 128 tokens, LoRA r=16 all-linear, AdamW",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
