"""A non-editable install (a built wheel, not the source tree) finds everything treasure ships: the bundled
data, evaluation prompts, phrase tables, recipes, taxonomy and classifier resources."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHECK = """
import json
import treasure
from treasure.annotate.classifier import Classifier, ClassifierConfig
from treasure.bundled import load_bundled
from treasure.evaluate.prompts import alpaca_eval
from treasure.instructions import TABLES, detect
from treasure.taxonomy import Taxonomy
from treasure.train import TrainConfig

rows, _ = load_bundled(groups=("train", "multilingual"))
print(json.dumps({
    "module": treasure.__file__,
    "rows": len(rows),
    "alpaca_eval": len(alpaca_eval()),
    "phrase_tables": len(TABLES),
    "fixed": detect("Answer in French, in 20 words or less.").markers,
    "taxonomy_markers": len(Taxonomy.default().markers),
    "recipe_steps": TrainConfig.from_file("tiny_demo", train_dir="t", output_dir="o").max_steps,
    "classifier": len(Classifier(Taxonomy.default(), ClassifierConfig()).layers),
}))
"""


@pytest.mark.slow
def test_a_built_wheel_finds_its_data(tmp_path: Path) -> None:
    source = tmp_path / "source"  # build from a copy: building writes build/ and egg-info beside the sources
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*pip, "--target", str(site), str(source)],
        check=True,
        capture_output=True,
    )
    shutil.rmtree(source)  # nothing may be read from the sources
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run(
        [sys.executable, "-c", CHECK], env=env, cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["module"].startswith(str(site))
    assert found["rows"] > 9250  # English training rows plus the multilingual ones
    assert found["alpaca_eval"] == 805
    assert found["phrase_tables"] == 7
    assert found["fixed"] == {"language": "French", "length_tokens": 20}
    assert found["taxonomy_markers"] >= 13
    assert found["recipe_steps"] > 0
    assert found["classifier"] == 2  # task and domain heads
