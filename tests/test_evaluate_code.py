"""HumanEvalFix code suite: sandboxed execution on the bundled HumanEvalPack, extraction, skipping."""

from __future__ import annotations

import gzip
import json
import time

import pytest

from treasure.errors import DataError, TreasureError
from treasure.evaluate.suites.code import (
    CodeSuiteConfig,
    can_write_code,
    extract_code,
    fix_prompt,
    load_problems,
    run_code_suite,
    run_tests,
)

SAMPLE = CodeSuiteConfig(n_problems=20, seed=3)


@pytest.fixture(scope="module")
def problems():
    return load_problems(SAMPLE)


@pytest.fixture(scope="module")
def first():
    return load_problems()[0]  # Python/0 has_close_elements


def fenced(problem, body: str) -> str:
    return f"Here is the fix:\n\n```python\n{problem.declaration}{body}```\nIt now works."


def test_load_all_and_seeded_sample():
    everything = load_problems()
    assert len(everything) == 164 and everything[0].task_id == "Python/0"
    sample = load_problems(SAMPLE)
    assert len(sample) == 20 and len({p.task_id for p in sample}) == 20
    assert [p.task_id for p in sample] == [p.task_id for p in load_problems(SAMPLE)]
    other = load_problems(CodeSuiteConfig(n_problems=20, seed=4))
    assert [p.task_id for p in other] != [p.task_id for p in sample]


def test_load_rejects_bad_rows_and_languages(tmp_path):
    bad = tmp_path / "bad.jsonl.gz"
    row = {"task_id": "X/0", "prompt": "def f():\n", "declaration": "def f():\n", "buggy_solution": "  1"}
    with gzip.open(bad, "wt", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")
    with pytest.raises(DataError, match=r"bad\.jsonl\.gz:1: field 'canonical_solution'"):
        load_problems(CodeSuiteConfig(data_path=bad))
    with pytest.raises(TreasureError, match="only 'python'"):
        load_problems(CodeSuiteConfig(language="rust"))


def test_canonical_solutions_pass_in_sandbox(problems):
    failures = {
        p.task_id: r.error
        for p in problems
        if not (r := run_tests(p.declaration + p.canonical_solution, p, timeout_s=10)).passed
    }
    assert failures == {}


def test_buggy_solutions_fail(problems):
    results = [run_tests(p.declaration + p.buggy_solution, p, timeout_s=3) for p in problems]
    assert sum(not r.passed for r in results) >= 18
    assert all(r.error for r in results if not r.passed)


def test_infinite_loop_is_killed_by_timeout(first):
    start = time.monotonic()
    result = run_tests(
        f"def {first.entry_point}(numbers, threshold):\n    while True:\n        pass\n", first, 1.5
    )
    assert time.monotonic() - start < 6
    assert not result.passed and result.error is not None
    assert "timeout" in result.error or "CPU time" in result.error


def test_child_processes_are_killed_with_the_group(first, tmp_path):
    marker = tmp_path / "alive"
    child = f"import time; time.sleep(2); open({str(marker)!r}, 'w')"
    code = (
        f"import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', {child!r}])\n"
        f"def {first.entry_point}(numbers, threshold):\n    while True:\n        pass\n"
    )
    assert run_tests(code, first, 1.0).error.startswith("timeout")
    time.sleep(2.5)
    assert not marker.exists()


def test_memory_bomb_fails_cleanly(first):
    bomb = f"def {first.entry_point}(numbers, threshold):\n    return len(bytearray(8 * 1024**3)) > 0\n"
    result = run_tests(bomb, first, timeout_s=10, memory_bytes=512 << 20)
    assert not result.passed and "MemoryError" in result.error


def test_failure_messages_name_the_error(first):
    assert run_tests(f"def {first.entry_point}(a, b):\n    return True\n", first).error == "AssertionError"
    syntax = run_tests(f"def {first.entry_point}(a, b)\n    return True\n", first)
    assert not syntax.passed and "SyntaxError" in syntax.error


def test_fix_prompt_shows_buggy_code_and_tests(first):
    prompt = fix_prompt(first)
    assert prompt.startswith("Fix bugs in has_close_elements.")
    assert "distance = elem - elem2" in prompt and "def check(has_close_elements)" in prompt
    docs = fix_prompt(first, variant="docs")
    assert "Check if in given list of numbers" in docs and "def check(" not in docs


def test_extract_code_from_fenced_and_unfenced(first):
    body = first.canonical_solution
    from_fence = extract_code(fenced(first, body), first)
    assert from_fence.startswith("from typing import List") and "It now works" not in from_fence
    two = "```\nprint('hi')\n```\n```python\ndef has_close_elements(a, b):\n    return False\n```"
    assert extract_code(two, first).startswith("def has_close_elements(a, b)")
    bare_body = extract_code(body, first)
    assert bare_body.startswith(first.declaration) and run_tests(bare_body, first).passed
    flush_body = "\n".join(line[4:] for line in body.splitlines())
    assert run_tests(extract_code(flush_body, first), first).passed
    unterminated = f"```python\n{first.declaration}{body}"
    assert run_tests(extract_code(unterminated, first), first).passed
    indented = "    " + (first.declaration + body).replace("\n", "\n    ")
    assert run_tests(extract_code(indented, first), first).passed


def test_can_write_code_heuristic():
    assert not can_write_code(["Once upon a time, a little fox found a red ball.", "Hello", ""])
    assert can_write_code(["Once upon a time.", "def f(x):\n    return x + 1"])
    assert can_write_code(["```python\nprint(1)\n```"])
    assert can_write_code(["total = sum(values)\nprint(total)"])


def test_suite_with_canonical_answers_scores_one(problems):
    config = CodeSuiteConfig(n_problems=8, seed=1)
    chosen = load_problems(config)
    seen: list[str] = []

    def oracle(prompts: list[str]) -> list[str]:
        seen.extend(prompts)
        return [fenced(p, p.canonical_solution) for p in chosen]

    result = run_code_suite(oracle, config)
    assert result["pass_at_1"] == 1.0 and result["n"] == 8 and result["passed"] == 8
    assert result["skipped"] is None and len(result["per_problem"]) == 8
    assert all(f"Fix bugs in {p.entry_point}." in s for p, s in zip(chosen, seen, strict=True))


def test_suite_with_buggy_answers_scores_zero():
    config = CodeSuiteConfig(n_problems=6, seed=2)
    chosen = load_problems(config)
    result = run_code_suite(lambda prompts: [fenced(p, p.buggy_solution) for p in chosen], config)
    assert result["pass_at_1"] == 0.0 and result["n"] == 6
    assert all(row["error"] for row in result["per_problem"])


def test_suite_skips_a_model_that_writes_prose():
    config = CodeSuiteConfig(n_problems=5)
    result = run_code_suite(lambda prompts: ["The dragon slept by the sea."] * len(prompts), config)
    assert result["pass_at_1"] is None and result["n"] == 0
    assert "cannot write code" in result["skipped"]


def test_suite_rejects_wrong_number_of_responses():
    with pytest.raises(TreasureError, match="returned 1 responses for 3 prompts"):
        run_code_suite(lambda prompts: ["x = 1"], CodeSuiteConfig(n_problems=3))
