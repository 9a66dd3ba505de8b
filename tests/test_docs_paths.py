"""Every repository path written in README.md and docs/*.md exists, so a renamed or deleted file cannot stay
cited.

What counts as a repository path, in inline code, fenced code blocks and markdown link targets:

- a word whose first component is a top-level entry of the repository (`TOP_LEVEL`: `src/…`, `docs/…`,
  `bench/…`, `scripts/…`, `tests/…`, `.ci/…`, `Makefile`, `pyproject.toml`, `mkdocs.yml`, …), relative to
  the repository root;
- a path inside the package written without `src/`: `treasure/…` (from `src/`), or two or more components
  starting with one of the package's folders (`configs/smollm2_demo.yaml`, `cli/train.py`,
  `resources/quality.npz`: from `src/treasure/`);
- a bare test or benchmark file name (`test_docs.py`, `bench_bf16.py`), as the tables name them: in `tests/`,
  in `bench/` or `bench/vllm/`;
- a link target that is not a URL, relative to the page that links it (README's from the root, the docs'
  from `docs/`).

`*` and `<placeholder>` are wildcards (at least one file must match), `{a,b}` expands, `path::test_name` also
needs `def test_name` in the file, a trailing `/` needs a folder. Everything else is not checked: run outputs
and user paths (`runs/demo/…`, `MODEL_DIR/…`, `TRAIN_DIR/…`, `~/.cache/…`, `$XDG_CACHE_HOME/…`, `/v1/models`),
ignored paths (`.venv/bin/python`), single folder names (`data/`, `train/`: also run-dir names) and bare
module names (`build.py`) of the package-layout listing.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "treasure"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# The repository's tracked top-level entries (.gitignore'd ones such as .venv/ and runs/ are not)
TOP_DIRS = frozenset({".ci", "bench", "docs", "scripts", "src", "tests"})
TOP_FILES = frozenset({".gitignore", "Makefile", "README.md", "mkdocs.yml", "pyproject.toml"})
TOP_LEVEL = TOP_DIRS | TOP_FILES
PACKAGE_DIRS = frozenset(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__")

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
CODE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\]\(([^)\s]+)")
URL = re.compile(r"[a-z][a-z0-9+.-]*:")
LEADING, TRAILING = "[('\"", ".,;:)]}'\""


def code_words(text: str) -> list[str]:
    """The words of every fenced block and inline code span; `=` also separates words (`--out=bench/x`)."""
    spans = FENCE.findall(text)
    spans += CODE.findall(FENCE.sub("", text))
    words = (w for span in spans for w in re.split(r"[\s=]+", span))
    return [w.lstrip(LEADING).rstrip(TRAILING) for w in words]


def repo_path(word: str) -> str | None:
    """The repository-relative path (pattern) a word names, or None when it is not a repository path."""
    if not word or URL.match(word):
        return None
    first = word.split("/")[0].split("::")[0]
    if first in TOP_LEVEL:
        return word
    if first == "treasure" and "/" in word:
        return "src/" + word
    if first in PACKAGE_DIRS and "/" in word.rstrip("/"):
        return "src/treasure/" + word
    if re.fullmatch(r"test_[\w*]+\.py(::\w+)?", word):
        return "tests/" + word
    if re.fullmatch(r"bench_[\w*]+\.py", word):
        return "bench/{,vllm/}" + word
    return None


def expand(pattern: str) -> list[str]:
    """`{a,b}` alternatives spelled out (one level, any number of groups)."""
    parts = re.split(r"\{([^{}]*)\}", pattern)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(combo) for combo in itertools.product(*choices)]


def exists(path: str, base: Path = ROOT) -> bool:
    path, _, test = path.partition("::")
    for candidate in expand(re.sub(r"<[^<>/]*>", "*", path)):
        relative = candidate.rstrip("/")
        matches = list(base.glob(relative)) if "*" in relative else [base / relative]
        for match in matches:
            if candidate.endswith("/") and not match.is_dir():
                continue
            if not match.exists():
                continue
            if test and not re.search(rf"^def {re.escape(test)}\(", match.read_text("utf-8"), re.MULTILINE):
                continue
            return True
    return False


def cited_paths(page: Path) -> list[tuple[str, str, Path]]:
    """(as written, path pattern, folder it is relative to) for every repository path the page names."""
    text = page.read_text(encoding="utf-8")
    cited = [(w, p, ROOT) for w in code_words(text) if (p := repo_path(w)) is not None]
    for target in LINK.findall(text):
        if not URL.match(target) and not target.startswith("#"):
            cited.append((target, target.split("#")[0], page.parent))
    return cited


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_cited_repository_path_exists(page: Path) -> None:
    missing = [written for written, path, base in cited_paths(page) if not exists(path, base)]
    assert missing == [], f"{page.relative_to(ROOT)} cites paths that are not in the repository: {missing}"


def test_top_level_entries_exist() -> None:
    assert [name for name in sorted(TOP_DIRS) if not (ROOT / name).is_dir()] == []
    assert [name for name in sorted(TOP_FILES) if not (ROOT / name).is_file()] == []
    assert {"configs", "data", "resources", "cli"} <= PACKAGE_DIRS


def test_what_counts_as_a_repository_path() -> None:
    text = (
        "Run `.venv/bin/python bench/bench_bf16.py [--steps 4]`, it writes `bench/results/bf16.json`; "
        "`make demo` writes `runs/demo/report/metrics.json` and `MODEL_DIR/train.json`, models go to "
        "`~/.cache/treasure/models`; see `configs/smollm2_demo.yaml`, `treasure/backends/turns.py`, "
        "`test_docs.py`, `bench_tagger.py`, `build.py`, `data/`, `/v1/models`, `http://127.0.0.1:8001/v1`.\n"
        "```bash\ntreasure train --config=src/treasure/configs/tiny_model.yaml -o runs/x\n```\n"
    )
    paths = [p for w in code_words(text) if (p := repo_path(w)) is not None]
    assert paths == [
        "src/treasure/configs/tiny_model.yaml",
        "bench/bench_bf16.py",
        "bench/results/bf16.json",
        "src/treasure/configs/smollm2_demo.yaml",
        "src/treasure/backends/turns.py",
        "tests/test_docs.py",
        "bench/{,vllm/}bench_tagger.py",
    ]
    assert all(exists(p) for p in paths)


def test_a_missing_path_is_caught() -> None:
    assert exists("tests/test_docs.py::test_mkdocs_build_strict")
    assert not exists("tests/test_docs.py::test_no_such_test")
    assert exists("bench/results/<area>.json") and exists("bench/bench_*.py") and exists("docs/")
    assert not exists("bench/results/nothing.json")
    assert not exists("README.md/")  # a trailing slash needs a folder
    assert not exists(repo_path("test_stage_files.py") or "")
    assert not exists(repo_path("configs/no_such_recipe.yaml") or "")
