"""Benchmark generation: latency and tokens/s per mode, time to first answer token, marker guidance
(G = 2) against none side by side, detector accuracy.

    .venv/bin/python bench/bench_generate.py [--model DIR] [--baseline DIR] [--n 8] [--out FILE]

Model dirs default to the ones `make demo` writes (runs/demo/model-marked, runs/demo/model-baseline);
without them only the detector section runs. Writes bench/results/generate.json (or --out: a quick try,
e.g. `--n 2 --max-new-tokens 32 --out /tmp/generate.json`, leaves the recorded results alone).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from treasure.bundled import DATA_DIR
from treasure.generate import Generation, GenerationConfig, Generator
from treasure.instructions_eval import read_rows, score_files

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "generate.json"
DETECTOR_FILES = [
    DATA_DIR / "eval/ifeval_input_data.jsonl.gz",
    *sorted((DATA_DIR / "multilingual").glob("m_ifeval_*.jsonl.gz")),
]
PROMPTS = DATA_DIR / "eval/vicuna_bench_question.jsonl.gz"


def detector_section() -> dict[str, Any]:
    start = time.perf_counter()
    scores = score_files(DETECTOR_FILES)
    n_prompts = sum(len(read_rows(p)) for p in DETECTOR_FILES)
    return {"scores": scores, "n_prompts": n_prompts, "seconds": round(time.perf_counter() - start, 3)}


def per_request(generator: Generator, prompts: list[str], mode: str, markers: Any, strict: bool,
                config: GenerationConfig) -> dict[str, Any]:  # fmt: skip
    latencies, tokens = [], []
    for prompt in prompts:
        start = time.perf_counter()
        result = generator.generate([prompt], mode, markers, strict, config)[0]
        latencies.append(time.perf_counter() - start)
        tokens.append(result.n_tokens)
    return {
        "requests": len(prompts),
        "latency_s_median": round(statistics.median(latencies), 4),
        "latency_s_mean": round(statistics.mean(latencies), 4),
        "completion_tokens_mean": round(statistics.mean(tokens), 1),
        "tokens_per_s": round(sum(tokens) / sum(latencies), 1),
    }


def first_answer_token(generator: Generator, prompts: list[str], mode: str, markers: Any, strict: bool,
                       config: GenerationConfig) -> dict[str, Any]:  # fmt: skip
    """Seconds from the request to the first answer text (the template is held back) and to the end."""
    first, total, template_tokens = [], [], []
    for prompt in prompts:
        start = time.perf_counter()
        seen = None
        final: Generation | None = None
        for item in generator.stream(prompt, mode, markers, strict, config):
            if isinstance(item, Generation):
                final = item
            elif seen is None and item.strip():
                seen = time.perf_counter() - start
        total.append(time.perf_counter() - start)
        first.append(seen if seen is not None else total[-1])
        if final is not None:
            block = final.raw[: len(final.raw) - len(final.response)] if final.response else final.raw
            template_tokens.append(generator.backend.count_tokens(block))
    return {
        "first_answer_token_s_median": round(statistics.median(first), 4),
        "stream_total_s_median": round(statistics.median(total), 4),
        "template_tokens_mean": round(statistics.mean(template_tokens), 1) if template_tokens else None,
    }


def guidance_section(generator: Generator, prompts: list[str], markers: Any,
                     config: GenerationConfig, scale: float = 2.0) -> dict[str, Any]:  # fmt: skip
    """Controlling without guidance and with marker guidance G = `scale`, side by side: each prompt runs
    both ways in turn (so load on the machine hits both alike), batch 1 per request."""
    runs = {
        "unguided (G=1)": replace(config, guidance=1.0),
        f"guided (G={scale:g})": replace(config, guidance=scale),
    }
    seconds = {name: 0.0 for name in runs}
    tokens = {name: 0 for name in runs}
    for prompt in prompts:
        for name, run in runs.items():
            start = time.perf_counter()
            result = generator.generate([prompt], "controlling", markers, False, run)[0]
            seconds[name] += time.perf_counter() - start
            tokens[name] += result.n_tokens
    out: dict[str, Any] = {
        name: {
            "requests": len(prompts),
            "completion_tokens_mean": round(tokens[name] / len(prompts), 1),
            "latency_s_mean": round(seconds[name] / len(prompts), 4),
            "tokens_per_s": round(tokens[name] / seconds[name], 1),
        }
        for name in runs
    }
    plain, guided = (out[name]["tokens_per_s"] for name in runs)
    out["markers"] = markers
    out["guided_over_unguided_tokens_per_s"] = round(guided / plain, 3)
    return out


def model_section(model: Path, baseline: Path | None, n: int, max_new_tokens: int) -> dict[str, Any]:
    prompts = [row["turns"][0] for row in read_rows(PROMPTS)[:n]]
    config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=0, seed=0, batch_size=1)
    marked = Generator.from_model_dir(model)
    base = Generator.from_model_dir(baseline) if baseline is not None else None
    marked.generate(prompts[:1], config=config)  # warm-up
    if base is not None:
        base.generate(prompts[:1], config=config)
    medium = {"length_bucket": "medium"}
    runs = {
        "baseline_plain": (base, "conditioning", None, False),
        "conditioning": (marked, "conditioning", None, False),
        "controlling": (marked, "controlling", medium, False),
        "strict": (marked, "controlling", medium, True),
    }
    runs = {name: run for name, run in runs.items() if run[0] is not None}
    latency = {name: per_request(g, prompts, m, mk, s, config) for name, (g, m, mk, s) in runs.items()}
    ttft = {
        "with_template (conditioning)": first_answer_token(
            marked, prompts, "conditioning", None, False, config
        ),
        "with_template (strict)": first_answer_token(marked, prompts, "controlling", medium, True, config),
    }
    if base is not None:
        ttft["without_template (baseline)"] = first_answer_token(
            base, prompts, "conditioning", None, False, config
        )
    guidance = guidance_section(marked, prompts, medium, config)
    batch = GenerationConfig(max_new_tokens=max_new_tokens, temperature=0, seed=0, batch_size=len(prompts))
    start = time.perf_counter()
    results = marked.generate(prompts, config=batch)
    seconds = time.perf_counter() - start
    batched = {
        "batch_size": len(prompts),
        "seconds": round(seconds, 3),
        "tokens_per_s": round(sum(r.n_tokens for r in results) / seconds, 1),
    }
    return {
        "model": str(model),
        "baseline": str(baseline) if baseline is not None else "not given: baseline rows skipped",
        "prompts": f"{PROMPTS.name} first {n}",
        "max_new_tokens": max_new_tokens,
        "decoding": "greedy, batch 1 per request",
        "per_request": latency,
        "time_to_first_answer_token": ttft,
        "guidance": guidance,
        "batched_conditioning": batched,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "runs/demo/model-marked")
    parser.add_argument("--baseline", type=Path, default=ROOT / "runs/demo/model-baseline")
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--out", type=Path, default=OUT, help="where the JSON goes (default: %(default)s)")
    args = parser.parse_args()
    result: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, no GPU; "
        f"torch threads {torch.get_num_threads()}",
        "detector": detector_section(),
    }
    if args.model.is_dir():
        baseline = args.baseline if args.baseline.is_dir() else None
        result["generation"] = model_section(args.model, baseline, args.n, args.max_new_tokens)
    else:
        result["generation"] = f"skipped: no model dir at {args.model} (run `make demo`)"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(result.get("generation"), indent=2)[:3000])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
