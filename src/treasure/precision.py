"""Which float precision training runs in: bf16 where the hardware computes it natively, fp32 elsewhere.

On the CPU, bf16 under `torch.autocast` pays only with native bf16 instructions (AVX512-BF16 or AMX):
measured on such a 2-core machine, SmolLM2 LoRA steps ran 2.13x faster than fp32 (`bench/bench_bf16.py`);
without them bf16 is emulated and slower, so fp32 stays.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch

NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux `/proc/cpuinfo`; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return frozenset()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return frozenset(line.split(":", 1)[-1].split())


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX-BF16)."""
    return bool(NATIVE_BF16_FLAGS & cpu_flags())


def default_bf16() -> bool:
    """bf16 mixed precision by default: on a bf16-capable GPU, or without a GPU on a native-bf16 CPU."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cpu_has_native_bf16()
