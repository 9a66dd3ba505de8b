"""Marker guidance: the negative branch is the positive one without the given markers (token for token),
G = 1 is the unguided path itself, G != 1 changes answers deterministically, batches / fair turns /
streaming agree, backends without classifier-free guidance refuse it, and the CLI and server take it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from treasure import guidance, template
from treasure.backends import GenerationConfig
from treasure.backends.upstream import UpstreamBackend
from treasure.backends.vllm_backend import VLLMBackend
from treasure.bundled import DATA_DIR
from treasure.cli import _register_commands, app
from treasure.errors import TreasureError
from treasure.generate import GenerateConfig, Generator
from treasure.instructions_eval import read_rows
from treasure.serve import ServeConfig, create_app

GIVEN = {"length_bucket": "concise", "language": "English"}
# a block as the model writes it after a strict prefill: one more marker it inferred, then the close
WRITTEN = "<length_tokens>12</length_tokens>\n<task>Explanation</task>\n</TEMPLATE>\nBecause air scatters."
PROMPTS = [row["turns"][0] for row in read_rows(DATA_DIR / "eval" / "vicuna_bench_question.jsonl.gz")[:6]]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> Generator:
    return Generator.from_model_dir(tiny_model_dir)


@pytest.fixture(scope="module")
def randomly(random_model_dir: Path) -> Generator:
    return Generator.from_model_dir(random_model_dir)


def deleted_spans(longer: list[int], shorter: list[int]) -> list[list[int]] | None:
    """The runs of tokens to delete from `longer` to get `shorter` (greedy), or None if it is not a
    subsequence."""
    spans: list[list[int]] = []
    j, run = 0, []
    for token in longer:
        if j < len(shorter) and token == shorter[j]:
            if run:
                spans.append(run)
                run = []
            j += 1
        else:
            run.append(token)
    if run:
        spans.append(run)
    return spans if j == len(shorter) else None


@pytest.mark.slow
@pytest.mark.parametrize("strict", [False, True])
def test_negative_branch_is_the_positive_without_the_given_markers(tiny: Generator, strict: bool) -> None:
    prepared = tiny.prepare("Why is the sky blue? Explain.", "controlling", GIVEN, strict=strict)
    written = WRITTEN if strict else "<TEMPLATE>\n<language>English</language>\n" + WRITTEN
    positive, negative = tiny.branches(prepared, written)
    assert positive == prepared.text + written  # the positive branch is the normal input
    lines = "<language>English</language>\n<length_bucket>concise</length_bucket>\n"
    user_block = f"\n\n<TEMPLATE>\n{lines}</TEMPLATE>"
    given_lines = lines if strict else "<language>English</language>\n"
    # text: the user turn's block and the given marker lines of the assistant's block are gone, nothing else
    assert negative == positive.replace(user_block, "", 1).replace(given_lines, "", 1)
    assert "<length_tokens>12</length_tokens>\n<task>Explanation</task>\n</TEMPLATE>" in negative  # inferred
    assert negative.endswith("\nBecause air scatters.")
    # tokens: the negative ids are the positive ids with exactly those spans deleted
    tokenizer = tiny.backend.tokenizer
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in (positive, negative)]
    spans = deleted_spans(*ids)
    assert spans is not None
    assert [tokenizer.decode(span) for span in spans] == [user_block, given_lines]
    # the same with nothing written yet (strict: the prefill alone is the block so far)
    positive, negative = tiny.branches(prepared)
    assert positive == prepared.text
    assert negative == prepared.negative_prompt + ("<TEMPLATE>\n" if strict else "")


def test_fixed_mode_guides_by_the_detected_markers(randomly: Generator) -> None:
    prompt = "Explain tides. Answer the following instruction using 40 words or less."
    prepared = randomly.prepare(prompt, "fixed")
    assert prepared.given_markers == {"length_tokens": 40}
    positive, negative = randomly.branches(prepared, "<TEMPLATE>\n<length_tokens>40</length_tokens>\n")
    assert "40 words" not in positive and "40 words" not in negative  # the sentence left both branches
    assert "Explain tides." in negative and "length_tokens" not in negative
    assert positive.count("<length_tokens>40</length_tokens>") == 2  # user turn and the model's block


def test_without_marker_lines_keeps_everything_else() -> None:
    block = "<TEMPLATE>\n<task>Reasoning</task>\n<domain>Legal</domain>\n<task>x</domain>\n</TEMPLATE>"
    assert guidance.without_marker_lines(block, {"task"}) == (
        "<TEMPLATE>\n<domain>Legal</domain>\n<task>x</domain>\n</TEMPLATE>"
    )
    assert guidance.without_marker_lines(block, set()) == block
    # an open block: the given lines go all the same; text after a closed block is shared
    assert guidance.branch_texts(
        "P<TEMPLATE>\n", "<TEMPLATE>\n", "N", "<task>Reasoning</task>\n", {"task"}
    ) == (
        "P<TEMPLATE>\n<task>Reasoning</task>\n",
        "N<TEMPLATE>\n",
    )
    assert guidance.branch_texts("P", "", "N", "<task>A</task> plain answer", {"task"}) == (
        "P<task>A</task> plain answer",
        "N<task>A</task> plain answer",  # no block at the start: nothing is a marker line
    )


@pytest.mark.slow
def test_guidance_one_is_the_unguided_path(tiny: Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    greedy = GenerationConfig(max_new_tokens=60, temperature=0, batch_size=6)
    unguided = tiny.generate(PROMPTS, "controlling", {"length_bucket": "concise"}, config=greedy)
    branches = []
    real = guidance.branch_texts
    monkeypatch.setattr(guidance, "branch_texts", lambda *a: branches.append(a) or real(*a))
    one = tiny.generate(PROMPTS, "controlling", {"length_bucket": "concise"}, config=greedy)
    assert [g.raw for g in one] == [g.raw for g in unguided]
    assert branches == []  # no negative branch was ever built
    tiny.generate(PROMPTS[:1], "controlling", {"length_bucket": "concise"}, config=_with(greedy, 3.0))
    assert branches  # ...while G = 3 builds one (so the spy above would have seen it)


@pytest.mark.slow
def test_guidance_changes_answers_and_is_seeded(tiny: Generator) -> None:
    concise = {"length_bucket": "concise"}
    greedy = GenerationConfig(max_new_tokens=60, temperature=0, batch_size=6)
    plain = tiny.generate(PROMPTS, "controlling", concise, config=greedy)
    guided = tiny.generate(PROMPTS, "controlling", concise, config=_with(greedy, 3.0))
    assert [g.raw for g in guided] != [g.raw for g in plain]
    for g in guided:
        assert template.OPEN not in g.response and "</TEMPLATE>" not in g.response  # never the block
        assert g.given_markers == concise and g.n_tokens <= 60
    sampled = GenerationConfig(max_new_tokens=40, temperature=0.8, seed=5, batch_size=6, guidance=3.0)
    first = tiny.generate(PROMPTS, "controlling", concise, strict=True, config=sampled)
    again = tiny.generate(PROMPTS, "controlling", concise, strict=True, config=sampled)
    assert [g.raw for g in first] == [g.raw for g in again]
    # conditioning gives no markers: nothing to guide by, the same answers as without guidance
    assert [g.raw for g in tiny.generate(PROMPTS[:3], config=_with(greedy, 3.0))] == [
        g.raw for g in tiny.generate(PROMPTS[:3], config=greedy)
    ]


def _with(config: GenerationConfig, scale: float) -> GenerationConfig:
    return replace(config, guidance=scale)


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_guided_batches_turns_and_streams_agree(random_model_dir: Path, temperature: float) -> None:
    """Left-padded batches give each prompt what it gets alone (greedy); fair turns (the guidance
    processor keeps its own KV cache across them) and streaming change no token."""
    whole = Generator.from_model_dir(random_model_dir, turn_tokens=0)
    turned = Generator.from_model_dir(random_model_dir, turn_tokens=4)
    turned.backend._turns.waiting = lambda: True  # a hand-over every 4 tokens
    prompts = ["Tell me a story about a dragon and a knight.", "Hi", "What is rain?"]
    markers = [{"length_bucket": "concise"}, {"language": "French"}, None]  # the last: nothing to guide by
    config = GenerationConfig(max_new_tokens=24, temperature=temperature, seed=3, guidance=2.5)
    batch = whole.generate(prompts, "controlling", markers, config=config)
    assert (
        batch[0].raw
        != whole.generate(prompts[:1], "controlling", markers[:1], config=_with(config, 1))[0].raw
    )
    for prompt, marker, together in zip(prompts, markers, batch, strict=True):
        alone = whole.generate([prompt], "controlling", marker, config=config)[0]
        if temperature == 0:  # (a sampled batch draws its random numbers for all rows together)
            assert together.raw == alone.raw
        assert turned.generate([prompt], "controlling", marker, config=config)[0].raw == alone.raw
        *pieces, final = list(turned.stream(prompt, "controlling", marker, config=config))
        assert final.raw == alone.raw and "".join(pieces) == final.response


def test_backends_without_guidance_refuse_it() -> None:
    on, off = GenerationConfig(guidance=2.0), GenerationConfig(guidance=1.0, length_budget=True)
    message = "marker guidance .*needs the transformers backend: {} has no classifier-free guidance"
    with pytest.raises(TreasureError, match=message.format("vLLM")):
        VLLMBackend.check(on)
    with pytest.raises(TreasureError, match=message.format("an upstream engine")):
        UpstreamBackend.check(on)
    VLLMBackend.check(off)  # guidance 1 (and a budget, which they trim) pass
    UpstreamBackend.check(off)
    with pytest.raises(TreasureError, match=message.format("vLLM")):
        GenerateConfig(backend="vllm", generation=on)  # before any engine is loaded
    with pytest.raises(TreasureError, match=message.format("an upstream engine")):
        ServeConfig(upstream="http://127.0.0.1:1/v1", generation=on)


def test_guidance_and_budget_options_are_validated() -> None:
    assert GenerationConfig().guidance == 1.0 and GenerationConfig().length_budget is False
    for bad in (-0.5, float("nan"), float("inf"), 101.0):
        with pytest.raises(TreasureError, match=r"guidance must be in \[0, 100\] \(1 = off\)"):
            GenerationConfig(guidance=bad)
    with pytest.raises(TreasureError, match="length_budget must be true or false"):
        GenerationConfig(length_budget="yes")  # type: ignore[arg-type]
    GenerationConfig(guidance=0.0)  # G = 0: the negative branch alone


def test_cli_takes_guidance_and_length_budget(random_model_dir: Path) -> None:
    _register_commands()
    args = ["generate", str(random_model_dir), "--prompt", "Tell me a story.", "--marker", "length_tokens=3"]
    args += ["--max-new-tokens", "16", "--temperature", "0", "--guidance", "2", "--length-budget"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(result.stdout.split()) <= 3
    bad = CliRunner().invoke(app, [*args[:-3], "--guidance=-1"])
    assert bad.exit_code != 0 and "guidance must be in [0, 100]" in str(bad.exception)


def test_server_takes_guidance_and_length_budget(randomly: Generator) -> None:
    assert ServeConfig().generation.guidance == 1.0 and ServeConfig().generation.length_budget is False
    client = TestClient(create_app(randomly))
    user = [{"role": "user", "content": "Tell me a story."}]
    body = {"messages": user, "markers": {"length_tokens": 3}, "max_tokens": 16, "temperature": 0}
    body |= {"guidance": 2, "length_budget": True}
    reply = client.post("/v1/chat/completions", json=body)
    assert reply.status_code == 200, reply.text
    answer = reply.json()["choices"][0]["message"]["content"]
    assert len(answer.split()) <= 3
    expected = randomly.generate(
        ["Tell me a story."],
        "controlling",
        {"length_tokens": 3},
        config=GenerationConfig(max_new_tokens=16, temperature=0, guidance=2, length_budget=True),
    )[0]
    assert answer == expected.response
    with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as stream:
        events = [line for line in stream.iter_lines() if line.startswith("data: {")]
    streamed = "".join(json.loads(e[6:])["choices"][0]["delta"].get("content", "") for e in events)
    assert streamed == answer
    for field, value in (("guidance", -1), ("guidance", True), ("guidance", "2"), ("guidance", 1000)):
        bad = client.post("/v1/chat/completions", json={**body, field: value})
        assert bad.status_code == 422 and f"{field}:" in bad.json()["error"]["message"], bad.text
    bad = client.post("/v1/chat/completions", json={**body, "length_budget": "yes"})
    assert bad.status_code == 422 and "length_budget:" in bad.json()["error"]["message"], bad.text
