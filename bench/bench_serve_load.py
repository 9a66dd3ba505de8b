"""Load on `treasure serve`: fair turns under one long and many short requests; or, with `--upstream`, the
marker layer's cost in front of an engine.

Fair turns: the long request (`--long-tokens`) is sent first; `--shorts` short requests (`--short-tokens`
each) follow half a second later, all concurrent (one asyncio client). Reported per mode: latency of the
short requests (p50, p95, max), of the long one, 503s, wall time. Modes run side by side on the same
machine: `--turn-tokens 16` (default: a generation hands the model over every 16 tokens while another
waits) and `--turn-tokens 0` (first come, first served: the long one runs to its end first).
Writes bench/results/serve_load.json.
Run: `.venv/bin/python bench/bench_serve_load.py [--model smollm2-135m] [--shorts 200]`.

`--upstream`: `--requests` chats (greedy, `--request-tokens` each) all at once, alternately for `--rounds`
rounds straight to the engine (its `/v1/completions`, with the exact prompt text treasure makes) and through
`treasure serve --upstream` with its default admission. The engine is vLLM's server (`--engine vllm`,
started on `--model`), a transformers `treasure serve` (`--engine transformers`), or one already running
(`--engine-url`, e.g. a GPU vLLM server; `--upstream-model` is the name it serves). Reported per side:
errors, median wall time, completion tokens/s, latency p50/p95; the ratio of tokens/s through treasure to
straight (target ≥ 0.9), and how many answers differ between the two sides.
Writes bench/results/serve_upstream.json (or `--out`).
Run: `.venv/bin/python bench/bench_serve_load.py --upstream [--engine vllm] [--requests 200] [--rounds 3]`.
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
from treasure.backends import Completion, GenerationConfig
from treasure.generate import Generator

RESULTS = Path(__file__).parent / "results" / "serve_load.json"
UPSTREAM_RESULTS = Path(__file__).parent / "results" / "serve_upstream.json"
SHORT = [{"role": "user", "content": "Give me one tip for staying healthy."}]
LONG = [{"role": "user", "content": "Write a long story about a dragon who learns to cook."}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(command: list[str], port: int, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """Run a server listening on `port` until its /health answers; the process and its root URL."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        if process.poll() is not None:
            raise RuntimeError(f"{command[:6]} exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"{command[:6]} did not start")


def treasure_serve(model: str, *extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-c", "from treasure.cli import main; main()", "serve", model]
    return launch([*command, "--port", str(port), "--request-timeout", "3600", *extra], port)


def start(model: str, turn_tokens: int) -> tuple[subprocess.Popen, str]:
    return treasure_serve(model, "--max-queue", "1000", "--turn-tokens", str(turn_tokens))


def start_engine(model: str, engine: str) -> tuple[subprocess.Popen, str]:
    """vLLM's OpenAI server, or a transformers `treasure serve`, on `model`; its root URL."""
    if engine == "transformers":
        return treasure_serve(model, "--max-queue", "1000")
    from treasure.backends.vllm_backend import cpu_defaults

    port = free_port()
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model]
    command += ["--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--enforce-eager"]
    return launch(command, port, {**cpu_defaults(), **os.environ})


async def one(
    client: httpx.AsyncClient, url: str, max_tokens: int, messages: list = SHORT
) -> tuple[float, int, int]:
    """Latency, status and completion tokens of one greedy chat request."""
    began = time.monotonic()
    body = {"messages": messages, "max_tokens": max_tokens, "temperature": 0}
    response = await client.post(f"{url}/v1/chat/completions", json=body)
    tokens = response.json()["usage"]["completion_tokens"] if response.status_code == 200 else 0
    return time.monotonic() - began, response.status_code, tokens


async def load(url: str, shorts: int, short_tokens: int, long_tokens: int) -> dict:
    limits = httpx.Limits(max_connections=shorts + 10, max_keepalive_connections=shorts + 10)
    async with httpx.AsyncClient(timeout=3600, limits=limits) as client:
        await one(client, url, 2)  # warm-up
        began = time.monotonic()
        long_task = asyncio.create_task(one(client, url, long_tokens, LONG))
        await asyncio.sleep(0.5)
        results = await asyncio.gather(*(one(client, url, short_tokens) for _ in range(shorts)))
        long_latency, long_status, long_made = await long_task
        wall = time.monotonic() - began
    latencies = sorted(t for t, status, _ in results if status == 200)
    return {
        "short_ok": len(latencies),
        "short_503": sum(status == 503 for _, status, _ in results),
        "short_p50_s": round(statistics.median(latencies), 2),
        "short_p95_s": round(latencies[int(0.95 * (len(latencies) - 1))], 2),
        "short_max_s": round(latencies[-1], 2),
        "long_s": round(long_latency, 2),
        "long_status": long_status,
        "long_completion_tokens": long_made,
        "wall_s": round(wall, 2),
    }


async def all_at_once(client: httpx.AsyncClient, url: str, bodies: list[dict]) -> dict:
    """Post every body at once to `url`: errors, wall time, completion tokens/s, latencies, the choices."""

    async def post(body: dict) -> tuple[float, dict | None]:
        began = time.monotonic()
        reply = await client.post(url, json=body)
        return time.monotonic() - began, reply.json() if reply.status_code == 200 else None

    began = time.monotonic()
    results = await asyncio.gather(*(post(body) for body in bodies))
    wall = time.monotonic() - began
    latencies = sorted(t for t, data in results if data)
    tokens = sum(data["usage"]["completion_tokens"] for _, data in results if data)
    return {
        "errors": sum(data is None for _, data in results),
        "wall_s": round(wall, 2),
        "completion_tokens_per_s": round(tokens / wall, 1),
        "p50_s": round(statistics.median(latencies), 2) if latencies else None,
        "p95_s": round(latencies[int(0.95 * (len(latencies) - 1))], 2) if latencies else None,
        "choices": [data["choices"][0] if data else None for _, data in results],
    }


async def alternate(
    engine_url: str, front_url: str, straight: list[dict], through: list[dict], rounds: int
) -> dict:
    """`rounds` rounds of the straight load on the engine, then the same chats through treasure."""
    n = len(straight) + 10
    runs: dict[str, list[dict]] = {"straight_to_engine": [], "through_treasure": []}
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(timeout=3600, limits=limits) as client:
        await all_at_once(client, f"{engine_url}/completions", straight[:2])  # warm-up
        for _ in range(rounds):
            runs["straight_to_engine"].append(
                await all_at_once(client, f"{engine_url}/completions", straight)
            )
            runs["through_treasure"].append(
                await all_at_once(client, f"{front_url}/chat/completions", through)
            )
    return runs


def summary(measured: list[dict]) -> dict:
    return {
        "errors": sum(run["errors"] for run in measured),
        "median_wall_s": statistics.median(run["wall_s"] for run in measured),
        "median_completion_tokens_per_s": statistics.median(
            run["completion_tokens_per_s"] for run in measured
        ),
        "rounds": [{k: v for k, v in run.items() if k != "choices"} for run in measured],
    }


def compare_upstream(args: argparse.Namespace) -> dict:
    """The same greedy chats straight to the engine and through `treasure serve --upstream` (defaults)."""
    model = models.resolve(args.model)
    engine, engine_url = None, args.engine_url
    if engine_url is None:
        engine, root = start_engine(model, args.engine)
        engine_url = f"{root}/v1"
    served = args.upstream_model or model
    marker_layer = Generator.from_model_dir(model, backend="upstream", url=engine_url, model=served)
    from treasure.bundled import short_prompts

    texts = short_prompts(args.requests)
    prepared = [marker_layer.prepare(text) for text in texts]
    greedy = {"max_tokens": args.request_tokens, "temperature": 0}
    straight = [{"model": served, "prompt": p.text, **greedy} for p in prepared]
    through = [{"messages": [{"role": "user", "content": t}], **greedy} for t in texts]
    front = None
    try:
        front, front_root = treasure_serve(model, "--upstream", engine_url, "--upstream-model", served)
        runs = asyncio.run(alternate(engine_url, f"{front_root}/v1", straight, through, args.rounds))
    finally:
        for process in (front, engine):
            if process is not None:
                process.terminate()
                process.wait(timeout=60)
    config = GenerationConfig(max_new_tokens=args.request_tokens, temperature=0)
    straight_answers = [
        marker_layer.finish(p, Completion(c["text"], 0, True), config).response if c else None
        for p, c in zip(prepared, runs["straight_to_engine"][-1]["choices"], strict=True)
    ]
    chats = [c["message"]["content"] if c else None for c in runs["through_treasure"][-1]["choices"]]
    sides = {side: summary(measured) for side, measured in runs.items()}
    ratio = (
        sides["through_treasure"]["median_completion_tokens_per_s"]
        / sides["straight_to_engine"]["median_completion_tokens_per_s"]
    )
    return {
        "date": time.strftime("%Y-%m-%d"),
        "model": args.model,
        "engine": args.engine if engine is not None else engine_url,
        "requests": args.requests,
        "request_tokens": args.request_tokens,
        "cpus": os.cpu_count(),
        **sides,
        "ratio_tokens_per_s_through_over_straight": round(ratio, 3),
        "answers_differing": sum(a != b for a, b in zip(straight_answers, chats, strict=True)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--shorts", type=int, default=200)
    parser.add_argument("--short-tokens", type=int, default=4)
    parser.add_argument("--long-tokens", type=int, default=256)
    parser.add_argument("--upstream", action="store_true", help="measure the marker layer before an engine")
    parser.add_argument("--engine", choices=("vllm", "transformers"), default="vllm")
    parser.add_argument("--engine-url", help="an engine already running (its /v1 base)")
    parser.add_argument("--upstream-model", help="the model name that engine serves (default: --model's dir)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--request-tokens", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, help="where the --upstream report goes")
    args = parser.parse_args()
    if args.upstream:
        report = compare_upstream(args)
        out = args.out or UPSTREAM_RESULTS
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(json.dumps(report, indent=2))
        return
    model = models.resolve(args.model)
    runs = {}
    for turn_tokens in (16, 0):
        process, url = start(model, turn_tokens)
        try:
            runs[f"turn_tokens={turn_tokens}"] = asyncio.run(
                load(url, args.shorts, args.short_tokens, args.long_tokens)
            )
        finally:
            process.terminate()
            process.wait(timeout=60)
        print(f"turn_tokens={turn_tokens}:", runs[f"turn_tokens={turn_tokens}"], flush=True)
    fair, fifo = runs["turn_tokens=16"], runs["turn_tokens=0"]
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "model": args.model,
        "shorts": args.shorts,
        "short_tokens": args.short_tokens,
        "long_tokens": args.long_tokens,
        "cpus": os.cpu_count(),
        "runs": runs,
        "short_p95_ratio_fair_over_fifo": round(fair["short_p95_s"] / fifo["short_p95_s"], 3),
        "short_p50_ratio_fair_over_fifo": round(fair["short_p50_s"] / fifo["short_p50_s"], 3),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
