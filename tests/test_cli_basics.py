"""`treasure taxonomy|template|data`: output, exit codes, one-line errors, --verbose tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from treasure.bundled import DATA_DIR
from treasure.cli import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    """Run the real entry point in-process; returns (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def test_taxonomy_show_lists_every_marker(capsys):
    code, out, _ = run(capsys, "taxonomy", "show")
    assert code == 0
    for name in ("task", "quality_bucket", "length_bucket", "code_type"):
        assert name in out
    assert "CreativeWriting" in out and "thresholds" in out and "1000]" in out


def test_taxonomy_validate_ok_and_bad(capsys, tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("extends: default\nmarkers:\n  task: {add_values: [Poetry]}\n", encoding="utf-8")
    code, out, _ = run(capsys, "taxonomy", "validate", str(good))
    assert code == 0 and out.startswith(f"ok {good}: 13 markers, sha256:")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "colour: red\nmarkers:\n  tone: {kind: weird}\n  mood: {kind: categorical}\n", encoding="utf-8"
    )
    code, out, err = run(capsys, "taxonomy", "validate", str(bad))
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert lines[0] == "error: 3 taxonomy problem(s):"
    assert [line.strip() for line in lines[1:]] == [
        f"{bad}: colour: unknown top-level key; valid: version, extends, markers",
        f"{bad}: markers.tone.kind: must be one of categorical, ordinal, integer, float, got 'weird'",
        f"{bad}: markers.mood.values: a categorical marker needs at least one value",
    ]
    assert "Traceback" not in err


def test_template_render_then_parse(capsys, tmp_path):
    code, out, _ = run(capsys, "template", "render", "task=rewrite", "length_tokens=12")
    assert code == 0
    assert out == "<TEMPLATE>\n<length_tokens>12</length_tokens>\n<task>Rewrite</task>\n</TEMPLATE>\n"
    text = tmp_path / "out.txt"
    text.write_text(out + "<TEMPLATE> is just text here", encoding="utf-8")
    code, out, _ = run(capsys, "template", "parse", str(text))
    assert code == 0
    assert json.loads(out) == {
        "markers": {"length_tokens": 12, "task": "Rewrite"},
        "response": "<TEMPLATE> is just text here",
        "error": None,
        "has_block": True,
    }


def test_template_render_errors_are_one_line(capsys):
    code, _, err = run(capsys, "template", "render", "task=Poetry")
    assert code == 1 and err.count("\n") == 1 and err.startswith("error: invalid value 'Poetry'")
    code, _, err = run(capsys, "template", "render", "task")
    assert code == 2 and "expected NAME=VALUE, got 'task'" in err


def test_data_inspect_on_bundled_file_with_field_mapping(capsys):
    path = DATA_DIR / "long_is_more_alpaca_1k_score.json.gz"
    code, out, _ = run(capsys, "data", "inspect", str(path), "--field", "quality=score")
    assert code == 0
    assert f"{path}: 1000 rows, preset fastchat, 0 rejected" in out.replace("\n", " ")
    assert "quality" in out and "Answer this true or false question" in out


def test_data_inspect_shows_first_errors_and_writes_nothing(capsys, tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"instruction": "a", "output": "b"}, {"instruction": "c"}, {"instruction": "d", "output": 3}]
    rows += [{"instruction": "e", "output": "f"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    code, out, _ = run(capsys, "data", "inspect", str(path), "--errors", "1")
    flat = out.replace("\n", " ")
    assert code == 0 and "2 rows, preset alpaca, 2 rejected" in flat
    assert f"{path}:2: field 'output': missing" in flat and "… and 1 more" in flat
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl"]
    mapping = ["--field", "prompt=instruction", "--field", "response=output"]
    code, out, _ = run(capsys, "data", "inspect", str(path), "--preset", "plain", *mapping)
    assert code == 0 and "2 rows, preset plain, 2 rejected" in out.replace("\n", " ")


def test_data_inspect_bad_preset_and_missing_file(capsys, tmp_path):
    code, _, err = run(capsys, "data", "inspect", str(DATA_DIR / "lima_1k.json.gz"), "--preset", "nope")
    assert code == 1 and err.strip() == (
        "error: unknown preset 'nope'; valid: alpaca, fastchat, messages, self_instruct, plain"
    )
    code, _, err = run(capsys, "data", "inspect", str(tmp_path / "none.jsonl"))
    assert code == 1 and err.strip() == f"error: {tmp_path / 'none.jsonl'}: file not found"


def test_verbose_shows_traceback(capsys, tmp_path):
    code, _, err = run(capsys, "--verbose", "data", "inspect", str(tmp_path / "none.jsonl"))
    assert code == 1 and "Traceback (most recent call last)" in err and "DataError" in err
    assert err.strip().endswith("file not found")


def test_python_dash_m_treasure_is_the_cli() -> None:
    """`accelerate launch -m treasure train …` needs the CLI as a module."""
    result = subprocess.run(
        [sys.executable, "-m", "treasure", "train", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    assert "TRAIN_DIR" in result.stdout and "--decision-weight" in result.stdout
