"""vLLM through treasure: batch throughput against plain vLLM and the transformers backend, and 200 concurrent
chat requests through `treasure serve --backend vllm` and `treasure serve --upstream` (vLLM's own server).

Throughput (one process, same model, same chat prompts, greedy): plain `vllm.LLM.generate` and treasure's
vLLM backend alternate for `--rounds` rounds (median tokens/s of each), then the transformers backend once
(batch 16). Ratios are what the targets are about; absolute figures on a shared 2-core machine are noisy.
Load: the `--requests` prompts are first sent one at a time to the in-process server (the reference
answers), then all at once to each server; errors, mismatches with the reference, latency p50/p95, wall
time and completion tokens/s are recorded.

Writes bench/results/vllm.json. Run (`.venv` holds vLLM's CPU build on Linux x86_64):
`.venv/bin/python bench/vllm/bench_vllm.py [--model smollm2-135m] [--requests 200]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from treasure import models
from treasure.backends import GenerationConfig
from treasure.backends.vllm_backend import cpu_defaults
from treasure.bundled import short_prompts
from treasure.generate import Generator

RESULTS = Path(__file__).parents[1] / "results" / "vllm.json"


def throughput(model: str, n_prompts: int, max_tokens: int, rounds: int) -> dict:
    from vllm import LLM, SamplingParams

    texts = short_prompts(n_prompts)
    config = GenerationConfig(max_new_tokens=max_tokens, temperature=0, batch_size=n_prompts)
    ours = Generator.from_model_dir(model, backend="vllm")
    chats = [ours.prepare(t).text for t in texts]
    token_prompts = [
        {"prompt_token_ids": ours.backend.tokenizer(c, add_special_tokens=False)["input_ids"]} for c in chats
    ]
    plain = LLM(model=model, dtype="float32", enforce_eager=True)
    params = SamplingParams(max_tokens=max_tokens, temperature=0)
    runs: dict[str, list[float]] = {"plain_vllm": [], "treasure_vllm": []}
    outputs: dict[str, list[str]] = {}
    for _ in range(rounds):
        began = time.perf_counter()
        done = plain.generate(token_prompts, params, use_tqdm=False)
        runs["plain_vllm"].append(
            sum(len(o.outputs[0].token_ids) for o in done) / (time.perf_counter() - began)
        )
        outputs["plain_vllm"] = [o.outputs[0].text for o in done]
        began = time.perf_counter()
        made = ours.generate(texts, config=config)
        runs["treasure_vllm"].append(sum(g.n_tokens for g in made) / (time.perf_counter() - began))
        outputs["treasure_vllm"] = [g.raw for g in made]
    ours.backend.close()
    del plain
    hf = Generator.from_model_dir(model)
    began = time.perf_counter()
    made = hf.generate(
        texts, config=GenerationConfig(max_new_tokens=max_tokens, temperature=0, batch_size=16)
    )
    runs["treasure_transformers"] = [sum(g.n_tokens for g in made) / (time.perf_counter() - began)]
    outputs["treasure_transformers"] = [g.raw for g in made]
    medians = {name: round(statistics.median(values), 1) for name, values in runs.items()}
    return {
        "prompts": n_prompts,
        "max_new_tokens": max_tokens,
        "rounds": rounds,
        "tokens_per_s": medians,
        "tokens_per_s_each_round": {k: [round(v, 1) for v in vs] for k, vs in runs.items()},
        "ratio_treasure_vllm_over_plain_vllm": round(medians["treasure_vllm"] / medians["plain_vllm"], 3),
        "ratio_treasure_vllm_over_transformers": round(
            medians["treasure_vllm"] / medians["treasure_transformers"], 3
        ),
        "identical_greedy_outputs": {
            "treasure_vllm_vs_plain_vllm": sum(
                a == b for a, b in zip(outputs["treasure_vllm"], outputs["plain_vllm"], strict=True)
            ),
            "treasure_vllm_vs_transformers": sum(
                a == b
                for a, b in zip(outputs["treasure_vllm"], outputs["treasure_transformers"], strict=True)
            ),
            "of": n_prompts,
        },
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(command: list[str], health: str) -> subprocess.Popen:
    env = {**cpu_defaults(), **os.environ}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command[:4]} exited with {process.returncode}")
        try:
            if httpx.get(health, timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"{command[:4]} did not start")


def treasure_serve(model: str, *extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-c", "from treasure.cli import main; main()", "serve", model]
    command += ["--port", str(port), "--max-queue", "1000", "--request-timeout", "3600", *extra]
    return launch(command, f"http://127.0.0.1:{port}/health"), f"http://127.0.0.1:{port}/v1"


async def chat(
    client: httpx.AsyncClient, url: str, prompt: str, max_tokens: int
) -> tuple[float, int, str, int]:
    began = time.monotonic()
    body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "temperature": 0}
    reply = await client.post(f"{url}/chat/completions", json=body)
    if reply.status_code != 200:
        return time.monotonic() - began, reply.status_code, "", 0
    data = reply.json()
    content = data["choices"][0]["message"]["content"] + json.dumps(data["treasure"]["markers"])
    return time.monotonic() - began, 200, content, data["usage"]["completion_tokens"]


async def one_at_a_time(url: str, texts: list[str], max_tokens: int) -> list[str]:
    async with httpx.AsyncClient(timeout=3600) as client:
        return [(await chat(client, url, t, max_tokens))[2] for t in texts]


async def all_at_once(url: str, texts: list[str], max_tokens: int, reference: list[str]) -> dict:
    limits = httpx.Limits(max_connections=len(texts) + 10, max_keepalive_connections=len(texts) + 10)
    async with httpx.AsyncClient(timeout=3600, limits=limits) as client:
        began = time.monotonic()
        results = await asyncio.gather(*(chat(client, url, t, max_tokens) for t in texts))
        wall = time.monotonic() - began
    latencies = sorted(t for t, status, _, _ in results if status == 200)
    tokens = sum(n for *_, n in results)
    return {
        "requests": len(texts),
        "errors": sum(status != 200 for _, status, _, _ in results),
        "answers_differing_from_one_at_a_time": sum(
            answer != alone for (_, _, answer, _), alone in zip(results, reference, strict=True)
        ),
        "p50_s": round(statistics.median(latencies), 2),
        "p95_s": round(latencies[int(0.95 * (len(latencies) - 1))], 2),
        "wall_s": round(wall, 2),
        "completion_tokens_per_s": round(tokens / wall, 1),
    }


def load(model: str, n_requests: int, max_tokens: int) -> dict:
    texts = short_prompts(n_requests)
    report: dict = {"requests": n_requests, "max_tokens": max_tokens}
    process, url = treasure_serve(model, "--backend", "vllm")
    try:
        began = time.monotonic()
        reference = asyncio.run(one_at_a_time(url, texts, max_tokens))
        report["one_at_a_time_wall_s"] = round(time.monotonic() - began, 2)
        report["serve_backend_vllm"] = asyncio.run(all_at_once(url, texts, max_tokens, reference))
        print("serve --backend vllm:", report["serve_backend_vllm"], flush=True)
    finally:
        process.terminate()
        process.wait(timeout=60)
    port = free_port()
    engine = launch(
        [
            *(sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model),
            *("--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--enforce-eager"),
        ],
        f"http://127.0.0.1:{port}/health",
    )
    try:
        front, url = treasure_serve(
            model, "--upstream", f"http://127.0.0.1:{port}/v1", "--upstream-model", model
        )
        try:
            report["serve_upstream_vllm_server"] = asyncio.run(all_at_once(url, texts, max_tokens, reference))
            print("serve --upstream (vLLM server):", report["serve_upstream_vllm_server"], flush=True)
        finally:
            front.terminate()
            front.wait(timeout=60)
    finally:
        engine.terminate()
        engine.wait(timeout=60)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--request-tokens", type=int, default=24)
    args = parser.parse_args()
    model = models.resolve(args.model)
    report = {"date": time.strftime("%Y-%m-%d"), "model": args.model, "cpus": os.cpu_count()}
    report["throughput"] = throughput(model, args.prompts, args.max_tokens, args.rounds)
    print("throughput:", report["throughput"], flush=True)
    report["load"] = load(model, args.requests, args.request_tokens)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
