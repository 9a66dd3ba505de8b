"""The LLM tagger against vLLM's OpenAI server, with and without structured output.

Starts `python -m vllm.entrypoints.openai.api_server` on `--model` (default smollm2-135m, prepared locally;
compact JSON: no free whitespace in structured answers), then tags `--rows` rows of the bundled task/domain
dev set (`src/treasure/data/dev/task_domain_dev.jsonl`, evenly spaced so every source is in) through
`treasure.annotate.annotate` with the `llm` annotator, `--concurrency` requests in flight, once with
`structured=json_schema` and once with `structured=off`. One attempt per row, so a bad reply is not asked
again: the invalid-label rate is that of first answers. One warm-up request per mode is not timed.

Per mode it records the invalid-label rate (rows whose reply was not a JSON object of allowed values),
agreement with the dev labels for task and domain (a null answer counts as wrong), rows/s and the tagger's
counters. Writes bench/results/tagger_vllm.json. Run:
`.venv/bin/python bench/vllm/bench_tagger.py [--model smollm2-135m] [--rows 60] [--concurrency 8]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import datasets
import httpx

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from treasure import models
from treasure.annotate import AnnotateConfig, LLMConfig, annotate
from treasure.annotate.accuracy import DEV_SET, per_class
from treasure.annotate.llm import LLMTagger
from treasure.backends.vllm_backend import cpu_defaults
from treasure.taxonomy import Taxonomy

RESULTS = Path(__file__).parents[1] / "results" / "tagger_vllm.json"
COMPACT_JSON = json.dumps({"backend": "xgrammar", "disable_any_whitespace": True})
MODES = ("json_schema", "off")


def dev_rows(n: int) -> list[dict[str, Any]]:
    """`n` evenly spaced rows of the task/domain dev set."""
    rows = [json.loads(line) for line in DEV_SET.open(encoding="utf-8") if line.strip()]
    return [rows[i * len(rows) // n] for i in range(min(n, len(rows)))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(model_dir: Path, port: int) -> list[str]:
    return [
        *(sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir)),
        *("--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--enforce-eager"),
        *("--structured-outputs-config", COMPACT_JSON),
    ]


def start_server(command: list[str], port: int) -> subprocess.Popen:
    """The server, once /health answers (its output goes to the terminal)."""
    process = subprocess.Popen(command, env={**cpu_defaults(), **os.environ})
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"vLLM's server exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(1)
    process.kill()
    raise RuntimeError("vLLM's server did not start")


def run_mode(rows: list[dict[str, Any]], config: LLMConfig) -> dict[str, Any]:
    """Tag `rows` with `config`: invalid rate, agreement with the dev labels, rows/s, counters."""
    LLMTagger(Taxonomy.default(), config).tag("Say hello.", "Hello!")  # warm-up, not timed
    ds = datasets.Dataset.from_list([{"prompt": r["prompt"], "response": r["response"]} for r in rows])
    began = time.perf_counter()
    result = annotate(ds, AnnotateConfig(annotators=("llm",), llm=config))
    wall = time.perf_counter() - began
    counts = result.extra["llm"]
    agreement = {
        marker: {
            key: per_class([r.get(marker) for r in rows], result.dataset[marker])[key]
            for key in ("n", "accuracy")
        }
        for marker in ("task", "domain")
    }
    return {
        "invalid_label_rate": round(counts["invalid_rows"] / len(rows), 4),
        "agreement_with_dev_labels": agreement,
        "rows_per_s": round(len(rows) / wall, 3),
        "wall_s": round(wall, 1),
        "counters": counts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--rows", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    model_dir = Path(models.resolve(args.model))
    rows = dev_rows(args.rows)
    port = free_port()
    command = server_command(model_dir, port)
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "model": args.model,
        "rows": len(rows),
        "concurrency": args.concurrency,
        "markers": list(LLMConfig.__dataclass_fields__["markers"].default),
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "command": shlex.join(["python", "bench/vllm/bench_tagger.py", *sys.argv[1:]]),
        "server_command": shlex.join(
            [*(f"{k}={v}" for k, v in cpu_defaults().items()), "python", *command[1:]]
        ),
    }
    server = start_server(command, port)
    try:
        for mode in MODES:
            config = LLMConfig(
                endpoint=f"http://127.0.0.1:{port}/v1",
                model=str(model_dir),
                structured=mode,
                attempts=1,
                concurrency=args.concurrency,
                timeout_s=900.0,
            )
            report[mode] = run_mode(rows, config)
            print(mode, json.dumps(report[mode]), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=60)
    report["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
