"""The documentation: `mkdocs build --strict` passes (no broken link, every page in the nav), a broken link
fails it, and README.md stays a short front page that links nothing outside the repository."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)")


def mkdocs_build(project: Path, site: Path) -> subprocess.CompletedProcess[str]:
    # Never `-q`: mkdocs then drops warnings instead of counting them, and --strict passes anyway.
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    config, site_dir = str(project / "mkdocs.yml"), str(site)
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", config, "--site-dir", site_dir],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    result = mkdocs_build(ROOT, tmp_path / "site")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "architecture" / "index.html").is_file()


def test_mkdocs_strict_fails_on_a_broken_link(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "docs", project / "docs")
    shutil.copyfile(ROOT / "mkdocs.yml", project / "mkdocs.yml")
    with open(project / "docs" / "index.md", "a", encoding="utf-8") as page:
        page.write("\nSee [the sources](../src/treasure/build.py).\n")
    result = mkdocs_build(project, tmp_path / "site")
    assert result.returncode != 0
    assert "../src/treasure/build.py" in result.stdout + result.stderr


def test_readme_is_a_short_self_contained_front_page() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    targets = LINK.findall(text)
    assert targets, "README.md links the docs"
    assert [t for t in targets if t.startswith("../") or t.startswith("/")] == []
    for target in targets:
        if not re.match(r"[a-z]+:", target):  # a file in the repository: it exists
            assert (ROOT / target.split("#")[0]).exists(), target


def test_no_page_links_outside_the_repository() -> None:
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        assert "../shared" not in page.read_text(encoding="utf-8"), page.name
