"""The vLLM backend and `treasure serve` over vLLM, against the transformers backend (same greedy tokens).

vLLM is optional: these tests run where it is installed (`make venv` puts vLLM's CPU build into `.venv` on
Linux x86_64 with AVX2) and are skipped elsewhere. One in-process engine serves the whole module; one vLLM
OpenAI server (the production recipe's engine) is started for the upstream tests and for the LLM tagger and
the pairwise judge with and without structured output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed (make venv adds its CPU build on Linux x86_64)")

import datasets
import openai
import uvicorn

from fixtures_server import _free_port, stop_server, wait_until_healthy
from treasure.annotate import AnnotateConfig, LLMConfig, annotate
from treasure.backends import GenerationConfig, Stop
from treasure.evaluate.config import EvalConfig, JudgeConfig
from treasure.evaluate.judge import OpenAIJudge
from treasure.evaluate.runner import evaluate
from treasure.evaluate.runs import GenerationRuns
from treasure.generate import Generator
from treasure.serve import ServeConfig, create_app
from treasure.taxonomy import Taxonomy

pytestmark = pytest.mark.slow

PROMPTS = [
    "Write a short story about a cat.",
    "Explain how photosynthesis works.",
    "Give me tips for studying, in 20 words or less.",
    "Describe the city of Paris.",
    "What is machine learning? Answer in Spanish.",
    "Write a poem about the sea.",
    "How do I bake bread?",
    "Summarize the history of Rome in three sentences.",
]
GREEDY = GenerationConfig(max_new_tokens=64, temperature=0, batch_size=8)
CASES = {
    "conditioning": ("conditioning", None, False),
    "controlling": ("controlling", {"length_bucket": "concise", "domain": "Sciences"}, False),
    "strict": ("controlling", {"length_bucket": "long"}, True),
    "fixed": ("fixed", None, False),
}


@pytest.fixture(scope="module")
def vllm_generator(tiny_model_dir: Path) -> Iterator[Generator]:
    generator = Generator.from_model_dir(tiny_model_dir, backend="vllm")
    try:
        yield generator
    finally:
        generator.backend.close()


@pytest.fixture(scope="module")
def hf_generator(tiny_model_dir: Path) -> Generator:
    return Generator.from_model_dir(tiny_model_dir)


@pytest.mark.parametrize("case", CASES)
def test_greedy_generations_equal_the_transformers_backend(
    case: str, vllm_generator: Generator, hf_generator: Generator
) -> None:
    mode, markers, strict = CASES[case]
    ours = vllm_generator.generate(PROMPTS, mode, markers, strict, GREEDY)
    theirs = hf_generator.generate(PROMPTS, mode, markers, strict, GREEDY)
    assert [g.raw for g in ours] == [g.raw for g in theirs]
    assert [(g.response, g.markers, g.markers_error, g.n_tokens) for g in ours] == [
        (g.response, g.markers, g.markers_error, g.n_tokens) for g in theirs
    ]
    assert any(g.markers for g in ours)  # the trained model writes its block: there is something to compare


def test_stream_pieces_join_to_the_completion_and_closing_aborts(vllm_generator: Generator) -> None:
    backend = vllm_generator.backend
    text = vllm_generator.prepare(PROMPTS[0]).text
    whole = backend.complete([text], GREEDY)[0]
    pieces = list(backend.stream(text, GREEDY))
    assert len(pieces) > 1 and "".join(pieces) == whole.text
    stop = Stop()
    stream = backend.stream(text, GenerationConfig(max_new_tokens=400, temperature=0), stop)
    next(stream)
    stream.close()
    assert stop.cancel.is_set()


def test_a_stop_aborts_the_request_inside_the_engine(vllm_generator: Generator) -> None:
    text = vllm_generator.prepare(PROMPTS[1]).text
    # near-uniform sampling over the vocabulary: the end-of-turn token is unlikely for many tokens
    rambling = GenerationConfig(max_new_tokens=1000, temperature=2.0, top_p=1.0, seed=3)
    stop = Stop()
    threading.Timer(0.2, stop.cancel.set).start()
    cut = vllm_generator.backend.complete([text], rambling, stop)[0]
    assert not cut.finished and 0 < cut.n_tokens < 1000
    assert vllm_generator.backend.complete([text], rambling, Stop(deadline=time.monotonic()))[0].n_tokens == 0


def test_sampling_is_seeded(vllm_generator: Generator) -> None:
    sampled = GenerationConfig(max_new_tokens=32, temperature=1.0, seed=11)
    first = [g.raw for g in vllm_generator.generate(PROMPTS[:4], config=sampled)]
    assert first == [g.raw for g in vllm_generator.generate(PROMPTS[:4], config=sampled)]
    other = GenerationConfig(max_new_tokens=32, temperature=1.0, seed=12)
    assert first != [g.raw for g in vllm_generator.generate(PROMPTS[:4], config=other)]


def test_evaluate_with_vllm_gives_the_transformers_numbers(tiny_model_dir: Path, tmp_path: Path) -> None:
    results = {}
    for backend in ("vllm", "transformers"):
        config = EvalConfig(
            model_dir=tiny_model_dir,
            out_dir=tmp_path / backend,
            suites=("adherence", "marker-prediction"),
            n_prompts=6,
            n_adherence_prompts=3,
            generation=GenerationConfig(max_new_tokens=48, temperature=0.0, batch_size=8),
            backend=backend,
            progress=False,
        )
        results[backend] = evaluate(config)["suites"]
    assert results["vllm"] == results["transformers"]
    assert results["vllm"]["adherence"]["cells"]


def test_auto_backend_runs_vllm_and_sends_guided_runs_to_transformers(
    tiny_model_dir: Path, vllm_generator: Generator, tmp_path: Path
) -> None:
    runs = GenerationRuns({"marked": tiny_model_dir}, tmp_path, GREEDY, backend="auto", progress=False)
    markers = [{"length_bucket": "long"}] * 4
    plain = runs.run("plain", "marked", PROMPTS[:4], mode="controlling", markers=markers)
    assert set(runs._generators) == {("marked", "vllm")}
    runs.run("guided", "marked", PROMPTS[:4], "controlling", markers, config=replace(GREEDY, guidance=1.5))
    assert set(runs._generators) == {("marked", "vllm"), ("marked", "transformers")}
    alone = vllm_generator.generate(PROMPTS[:4], "controlling", markers, config=GREEDY)
    assert [r["response"] for r in plain] == [g.response for g in alone]


# ---------------------------------------------------------------------------- serving


def _serve_in_thread(generator: Generator, config: ServeConfig) -> Iterator[str]:
    server = uvicorn.Server(
        uvicorn.Config(create_app(generator, config), port=config.port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{config.port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def vllm_server(vllm_generator: Generator) -> Iterator[str]:
    """`treasure serve --backend vllm`, in this process on the module's engine."""
    yield from _serve_in_thread(vllm_generator, ServeConfig(port=_free_port(), max_queue=64))


# the tagger's prompt (definitions, few-shot) is longer than the tiny model's 512 positions; RoPE extends to
# more positions, leaving the first 512 (every upstream test's prompt) as they were. No free whitespace in
# structured JSON: a tiny model would otherwise write spaces until max_tokens
LONG_CONTEXT = json.dumps({"max_position_embeddings": 4096})
COMPACT_JSON = json.dumps({"backend": "xgrammar", "disable_any_whitespace": True})


@pytest.fixture(scope="module")
def vllm_engine_server(tiny_model_dir: Path) -> Iterator[str]:
    """vLLM's own OpenAI server (the production recipe's engine) on the tiny model."""
    port = _free_port()
    command = [
        *(sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_model_dir)),
        *("--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--enforce-eager"),
        *("--hf-overrides", LONG_CONTEXT, "--structured-outputs-config", COMPACT_JSON),
    ]
    from treasure.backends.vllm_backend import cpu_defaults

    env = {**cpu_defaults(), **os.environ}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_until_healthy(process, f"http://127.0.0.1:{port}/health", 300, "vLLM's server")
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop_server(process, timeout_s=30)


@pytest.fixture(scope="module")
def upstream_server(tiny_model_dir: Path, vllm_engine_server: str) -> Iterator[str]:
    """`treasure serve --upstream` (in this process) in front of vLLM's server."""
    generator = Generator.from_model_dir(
        tiny_model_dir, backend="upstream", url=vllm_engine_server, model=str(tiny_model_dir)
    )
    yield from _serve_in_thread(generator, ServeConfig(port=_free_port(), max_queue=64))


def _chat(client: openai.OpenAI, prompt: str, **extra: object) -> tuple[str, dict]:
    reply = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": prompt}], temperature=0, max_tokens=48, **extra
    )
    return reply.choices[0].message.content, reply.model_extra["treasure"]


@pytest.mark.parametrize("server", ["vllm_server", "upstream_server"])
def test_served_answers_equal_the_transformers_backend(
    server: str, request: pytest.FixtureRequest, hf_generator: Generator
) -> None:
    client = openai.OpenAI(base_url=request.getfixturevalue(server), api_key="none", max_retries=0)
    config = GenerationConfig(max_new_tokens=48, temperature=0)
    for prompt in PROMPTS[:3]:
        expected = hf_generator.generate([prompt], config=config)[0]
        content, treasure = _chat(client, prompt)
        assert content == expected.response
        assert treasure["markers"] == expected.markers
        controlled = hf_generator.generate(
            [prompt], "controlling", {"length_bucket": "concise"}, config=config
        )
        content, treasure = _chat(client, prompt, extra_body={"markers": {"length_bucket": "concise"}})
        assert content == controlled[0].response and treasure["markers"] == controlled[0].markers
        stream = client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": prompt}],
            temperature=0,
            max_tokens=48,
            stream=True,
        )
        assert "".join(chunk.choices[0].delta.content or "" for chunk in stream) == expected.response


@pytest.mark.parametrize("server", ["vllm_server", "upstream_server"])
def test_concurrent_requests_are_answered_as_if_alone(server: str, request: pytest.FixtureRequest) -> None:
    client = openai.OpenAI(base_url=request.getfixturevalue(server), api_key="none", max_retries=0)
    prompts = [f"{PROMPTS[i % len(PROMPTS)]} ({i})" for i in range(48)]
    alone = {p: _chat(client, p) for p in prompts[:8]}
    with ThreadPoolExecutor(max_workers=48) as pool:
        together = list(pool.map(lambda p: _chat(client, p), prompts))
    assert all(answer for answer, _ in together)
    assert [together[i] for i in range(8)] == [alone[p] for p in prompts[:8]]


# ---------------------------------------------------------------------------- tagger and judge on vLLM


@pytest.mark.parametrize("structured", ["json_schema", "off"])
def test_llm_tagger_with_and_without_structured_output(
    structured: str, vllm_engine_server: str, tiny_model_dir: Path, bundled_sample: datasets.Dataset
) -> None:
    rows = bundled_sample.select(range(0, 48, 3)).select_columns(["prompt", "response"])
    config = LLMConfig(
        endpoint=vllm_engine_server,
        model=str(tiny_model_dir),
        structured=structured,
        attempts=1,
        backoff_s=0.0,
        concurrency=8,
        max_chars=300,
        max_tokens=192,  # room to spare: a structured answer took ~85 tiny-tokenizer tokens
    )
    result = annotate(rows, AnnotateConfig(annotators=("llm",), llm=config))
    counts = result.extra["llm"]
    assert counts["requests"] == 16 and counts["failures"] == 0 and counts["structured_fallbacks"] == 0
    tax = Taxonomy.default()
    for marker in config.markers:
        assert {v for v in result.dataset[marker] if v is not None} <= set(tax[marker].values)
    invalid = [row for row in result.dataset if all(row[m] is None for m in config.markers)]
    if structured == "json_schema":  # the engine can only write allowed values
        assert counts["invalid_rows"] == 0
    else:  # the marked tiny model answers with its template block, never a JSON object
        assert counts["invalid_rows"] == len(invalid) == 16


@pytest.mark.parametrize("structured", ["json_schema", "off"])
def test_pairwise_judge_with_and_without_structured_output(
    structured: str, vllm_engine_server: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    config = JudgeConfig(
        kind="openai",
        endpoint=vllm_engine_server,
        model=str(tiny_model_dir),
        structured=structured,
        max_retries=0,
        concurrency=8,
    )
    judge = OpenAIJudge(config, tmp_path)
    outcomes = judge.compare(PROMPTS[:4], ["Yes.", "No.", "Maybe.", "A cat."], ["No.", "Yes.", "?", "A dog."])
    assert all(o in (0.0, 0.25, 0.5, 0.75, 1.0) for o in outcomes)
    assert judge.counts["requests"] == 8 and judge.counts["failures"] == 0  # 4 pairs, both orders
    assert judge.counts["invalid"] == (0 if structured == "json_schema" else 8)
