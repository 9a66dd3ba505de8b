"""The optional code suite: HumanEvalFix pass@1 of the marked model, with a subprocess sandbox.

HumanEvalFix (OctoPack, Muennighoff et al. 2023) gives the model a HumanEval function with a
human-inserted bug and asks for a fixed version; pass@1 is the share of problems whose fixed code
passes the hidden HumanEval tests (one greedy sample per problem). Only the Python set is supported.
"""

from __future__ import annotations

import ast
import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rich.progress import track

from treasure.bundled import DATA_DIR
from treasure.errors import DataError, TreasureError
from treasure.evaluate.render import Page, count, html_section, note, pct, table
from treasure.evaluate.runs import GenerationRuns
from treasure.io import iter_records

if TYPE_CHECKING:
    from treasure.evaluate.context import EvalContext

REQUIRED_FIELDS = (
    "task_id",
    "prompt",
    "declaration",
    "buggy_solution",
    "canonical_solution",
    "test",
    "entry_point",
)
MAX_WORKERS = 2


@dataclass
class CodeSuiteConfig:
    """Settings of the code suite. `max_new_tokens`/`temperature` are for the caller's `generate_fn`."""

    language: str = "python"
    data_path: Path | None = None  # default: the bundled data/code/humanevalpack_<language>.jsonl.gz
    n_problems: int | None = None  # None = all 164; else a seeded sample
    seed: int = 0
    variant: Literal["tests", "docs"] = "tests"  # HumanEvalFixTests (tests shown) or HumanEvalFixDocs
    timeout_s: float = 10.0  # wall clock per problem; CPU limit is the same, rounded up
    memory_bytes: int = 1 << 30  # address-space limit of the sandboxed interpreter
    file_size_bytes: int = 16 << 20  # largest file (incl. captured stdout/stderr) it may write
    workers: int = MAX_WORKERS  # parallel sandboxes (capped at 2)
    max_new_tokens: int = 512
    temperature: float = 0.0
    progress: bool = False


@dataclass(frozen=True)
class CodeProblem:
    """One HumanEvalPack problem (the fields the suite uses)."""

    task_id: str
    prompt: str  # signature + docstring (+ helper functions and imports)
    declaration: str  # the same without the docstring
    buggy_solution: str  # function body with the bug
    canonical_solution: str  # correct function body
    test: str  # defines check(...) and calls it
    entry_point: str
    bug_type: str = ""


@dataclass(frozen=True)
class ExecResult:
    """Outcome of running one candidate against its tests."""

    passed: bool
    error: str | None = None


def load_problems(config: CodeSuiteConfig | None = None) -> list[CodeProblem]:
    """HumanEvalPack problems from the bundled JSONL (all, or a seeded sample in file order)."""
    config = config or CodeSuiteConfig()
    if config.language != "python":
        raise TreasureError(
            f"code suite: language {config.language!r} is not supported (only 'python' is executed)"
        )
    path = Path(config.data_path or DATA_DIR / "code" / f"humanevalpack_{config.language}.jsonl.gz")
    if not path.exists():
        raise DataError(str(path), "HumanEvalPack file not found")
    problems: list[CodeProblem] = []
    for line_no, row in iter_records(path):
        if isinstance(row, DataError):
            raise row
        for field in REQUIRED_FIELDS:
            if not isinstance(row.get(field), str) or not row[field].strip():
                raise DataError(
                    str(path), "missing or empty (a non-empty string is required)", line_no, field
                )
        problems.append(
            CodeProblem(**{f: row[f] for f in REQUIRED_FIELDS}, bug_type=str(row.get("bug_type") or ""))
        )
    if config.n_problems is not None and config.n_problems < len(problems):
        keep = sorted(random.Random(config.seed).sample(range(len(problems)), config.n_problems))
        problems = [problems[i] for i in keep]
    return problems


def fix_prompt(problem: CodeProblem, variant: Literal["tests", "docs"] = "tests") -> str:
    """HumanEvalFix instruction: the buggy function, its tests (or docstring), and the answer format."""
    if variant == "docs":
        code, context = problem.prompt + problem.buggy_solution, ""
    else:
        tests = problem.test.strip()
        code, context = (
            problem.declaration + problem.buggy_solution,
            f"\nIt must pass these tests:\n\n```python\n{tests}\n```\n",
        )
    return (
        f"Fix bugs in {problem.entry_point}.\n\n```python\n{code.rstrip()}\n```\n{context}\n"
        f"Reply with the whole corrected function `{problem.entry_point}` in one ```python code block."
    )


_FENCE = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.DOTALL)


def _defines(code: str, name: str) -> bool:
    return re.search(rf"^(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None


def extract_code(response: str, problem: CodeProblem) -> str:
    """Code to test from a response: the first fenced block defining `entry_point` (else the first
    fenced block, else the whole text), dedented. A bare body gets the problem's declaration prepended."""
    blocks = [textwrap.dedent(b) for b in _FENCE.findall(response)]
    code = next((b for b in blocks if _defines(b, problem.entry_point)), blocks[0] if blocks else None)
    code = textwrap.dedent(response) if code is None else code
    if _defines(code, problem.entry_point):
        return code
    lines = code.strip("\n").splitlines()
    first = next((ln for ln in lines if ln.strip()), "")
    if first and not first[0].isspace():
        lines = ["    " + ln if ln.strip() else ln for ln in lines]
    return problem.declaration + "\n".join(lines) + "\n"


def _preamble(problem: CodeProblem) -> str:
    """Imports and helper functions that precede the entry point in the declaration."""
    match = re.search(rf"^def\s+{re.escape(problem.entry_point)}\s*\(", problem.declaration, re.MULTILINE)
    return problem.declaration[: match.start()] if match else ""


_LAUNCHER = """\
import resource, runpy, sys
cpu, mem, fsize = (int(a) for a in sys.argv[1:4])
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
del resource, cpu, mem, fsize
sys.argv = ["solution.py"]
runpy.run_path("solution.py", run_name="__main__")
"""


def _tail(path: Path, limit: int = 2000) -> str:
    data = path.read_bytes()[-limit:] if path.exists() else b""
    return data.decode("utf-8", errors="replace").strip()


def run_tests(
    code: str,
    problem: CodeProblem,
    timeout_s: float = 10.0,
    memory_bytes: int = 1 << 30,
    file_size_bytes: int = 16 << 20,
) -> ExecResult:
    """Run `code` plus the problem's tests in a sandboxed subprocess; passed = exit status 0.

    The sandbox is a fresh `python -I` interpreter (no site-packages of the user, no PYTHON* variables,
    a minimal environment) started in its own session inside an empty temporary directory, which is
    deleted afterwards. Before the candidate runs, `resource.setrlimit` caps CPU seconds, address space
    (`memory_bytes`), file size and core dumps; after `timeout_s` of wall clock the whole process group
    is killed. The limits are set by a launcher inside the child rather than in `preexec_fn`, which
    Python documents as unsafe when threads exist (the suite runs two sandboxes from threads).
    This is NOT a security boundary: the code runs as the current user, can read files that user can
    read, and network access cannot be blocked portably without root (namespaces, seccomp) — run
    untrusted models' code in a container or VM.
    """
    program = f"{_preamble(problem)}\n{code}\n\n{problem.test}\n"
    with tempfile.TemporaryDirectory(prefix="treasure-code-") as tmp:
        work = Path(tmp)
        (work / "solution.py").write_text(program, encoding="utf-8")
        (work / "launcher.py").write_text(_LAUNCHER, encoding="utf-8")
        cpu = int(timeout_s) + 1
        env = {"PATH": os.defpath, "HOME": tmp, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
        args = [sys.executable, "-I", "launcher.py", str(cpu), str(memory_bytes), str(file_size_bytes)]
        with open(work / "stdout.txt", "wb") as out, open(work / "stderr.txt", "wb") as err:
            proc = subprocess.Popen(
                args,
                cwd=tmp,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
            try:
                returncode = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                return ExecResult(False, f"timeout: killed after {timeout_s:g} s wall clock")
            finally:
                _kill_group(proc)  # reap anything the candidate left running in its group
        if returncode == 0:
            return ExecResult(True, None)
        if returncode < 0:
            name = signal.Signals(-returncode).name
            hint = " (CPU time limit)" if name in ("SIGXCPU", "SIGKILL") else ""
            return ExecResult(False, f"killed by {name}{hint}")
        stderr = _tail(work / "stderr.txt")
        last = stderr.splitlines()[-1] if stderr else f"exit status {returncode}"
        return ExecResult(False, last[:500])


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


_DEF_LINE = re.compile(r"^\s*(?:async\s+)?def\s+\w+\s*\(.*\)\s*(?:->.*)?:\s*$", re.MULTILINE)


def looks_like_code(text: str) -> bool:
    """True when a response contains Python: a fenced block, a `def` line, or statements that parse."""
    if "```" in text or _DEF_LINE.search(text):
        return True
    try:
        tree = ast.parse(textwrap.dedent(text))
    except (SyntaxError, ValueError):
        return False
    return any(not isinstance(node, ast.Expr) for node in tree.body)


def can_write_code(responses: Sequence[str]) -> bool:
    """Heuristic: whether any response contains code at all (a story model's prose never does)."""
    return any(looks_like_code(r) for r in responses)


def run_code_suite(
    generate_fn: Callable[[list[str]], list[str]], config: CodeSuiteConfig | None = None
) -> dict[str, Any]:
    """HumanEvalFix pass@1: prompt the model once per problem, extract its code, run the tests.

    `generate_fn` maps the list of fix prompts to one response each (greedy decoding for pass@1).
    When no response contains code the suite is skipped: `pass_at_1` is None and `skipped` says why.
    """
    config = config or CodeSuiteConfig()
    problems = load_problems(config)
    prompts = [fix_prompt(p, config.variant) for p in problems]
    responses = list(generate_fn(prompts))
    if len(responses) != len(prompts):
        raise TreasureError(
            f"code suite: generate_fn returned {len(responses)} responses for {len(prompts)} prompts"
        )
    if not can_write_code(responses):
        return {
            "pass_at_1": None,
            "n": 0,
            "passed": 0,
            "skipped": (
                f"none of the {len(responses)} responses contains Python code (no fenced block, no function "
                "definition, no parsable statements): this model cannot write code, so HumanEvalFix pass@1 "
                "would measure nothing"
            ),
            "per_problem": [],
        }

    def run_one(item: tuple[CodeProblem, str]) -> ExecResult:
        problem, response = item
        code = extract_code(response, problem)
        return run_tests(code, problem, config.timeout_s, config.memory_bytes, config.file_size_bytes)

    workers = max(1, min(config.workers, MAX_WORKERS))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(run_one, zip(problems, responses, strict=True))
        if config.progress:
            results = track(results, total=len(problems), description="HumanEvalFix tests")
        results = list(results)
    passed = sum(r.passed for r in results)
    return {
        "pass_at_1": passed / len(problems) if problems else 0.0,
        "n": len(problems),
        "passed": passed,
        "skipped": None,
        "language": config.language,
        "variant": config.variant,
        "per_problem": [
            {"task_id": p.task_id, "bug_type": p.bug_type, "passed": r.passed, "error": r.error}
            for p, r in zip(problems, results, strict=True)
        ],
    }


def reference_pass_at_1(
    which: Literal["canonical", "buggy"], config: CodeSuiteConfig | None = None
) -> dict[str, Any]:
    """Sanity check of data and sandbox: the suite run with the dataset's own canonical or buggy bodies
    as the model's answers (canonical should give 1.0, buggy close to 0.0)."""
    config = config or CodeSuiteConfig()
    problems = load_problems(config)

    def answer(prompts: list[str]) -> list[str]:
        bodies = [p.canonical_solution if which == "canonical" else p.buggy_solution for p in problems]
        return [f"```python\n{p.declaration}{body}```" for p, body in zip(problems, bodies, strict=True)]

    return run_code_suite(answer, config)


class Code:
    """Share of buggy functions the marked model fixes on its first try (skipped if it writes no code)."""

    name = "code"
    needs_baseline = False
    needs_judge = False

    def run(self, ctx: EvalContext) -> dict[str, Any]:
        config = ctx.config
        code = CodeSuiteConfig(seed=config.seed)
        options = replace(config.generation, max_new_tokens=code.max_new_tokens, temperature=code.temperature)
        runs = GenerationRuns(
            {"marked": config.model_dir}, ctx.runs.cache_dir, options, config.backend, config.progress
        )

        def generate(prompts: list[str]) -> list[str]:
            return [r["response"] for r in runs.run("code", "marked", prompts)]

        return run_code_suite(generate, code)

    def render(self, section: Mapping[str, Any], page: Page) -> str:
        if section.get("skipped"):
            body = note(f"Skipped: {section['skipped']}")
        else:
            pass_at_1 = pct(section.get("pass_at_1"), "suites.code.pass_at_1")
            body = table(["pass@1", "n"], [[(pass_at_1, True), (count(section.get("n")), True)]])
        return html_section(
            "code",
            "Code repair",
            "HumanEvalFix pass@1: share of buggy functions the model fixes on its first try.",
            body,
        )
