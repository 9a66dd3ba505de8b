"""Load on `treasure serve`: one long request and many short ones at once, with and without fair turns.

The long request (`--long-tokens`) is sent first; `--shorts` short requests (`--short-tokens` each) follow
half a second later, all concurrent (one asyncio client). Reported per mode: latency of the short requests
(p50, p95, max), of the long one, 503s, wall time. Modes run side by side on the same machine:
`--turn-tokens 16` (default: a generation hands the model over every 16 tokens while another waits) and
`--turn-tokens 0` (first come, first served: the long one runs to its end first).

Writes bench/results/serve_load.json.
Run: `.venv/bin/python bench/bench_serve_load.py [--model smollm2-135m] [--shorts 200]`.
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

RESULTS = Path(__file__).parent / "results" / "serve_load.json"
SHORT = [{"role": "user", "content": "Give me one tip for staying healthy."}]
LONG = [{"role": "user", "content": "Write a long story about a dragon who learns to cook."}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(model: str, turn_tokens: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-c", "from treasure.cli import main; main()", "serve", model]
    command += ["--port", str(port), "--max-queue", "1000", "--request-timeout", "3600"]
    command += ["--turn-tokens", str(turn_tokens)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError("server did not start")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--shorts", type=int, default=200)
    parser.add_argument("--short-tokens", type=int, default=4)
    parser.add_argument("--long-tokens", type=int, default=256)
    args = parser.parse_args()
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
