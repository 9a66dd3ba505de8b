"""`treasure build`: dropout rates, seeded byte-for-byte output, baseline, escaping, overhead, errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import datasets
import pytest

from fixtures_model import write_annotated
from treasure import io, template
from treasure.build import BuildConfig, build, build_rows
from treasure.cli import main
from treasure.errors import DataError, MarkerError, TreasureError
from treasure.taxonomy import Taxonomy

TAX = Taxonomy.default()
MARKERS = {
    "task": TAX["task"].values,
    "domain": TAX["domain"].values,
    "language": ("English", "French"),
    "style": TAX["style"].values,
    "source": ("Human", "Synthetic"),
    "length_bucket": TAX["length_bucket"].values,
}


def synthetic_rows(n: int, seed: int = 1) -> datasets.Dataset:
    """`n` annotated rows with 6 categorical markers and a length, some markers absent."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        row = {"id": f"r{i}", "prompt": f"Question {i} <task>Rewrite</task>?", "response": f"Answer {i}."}
        for name, values in MARKERS.items():
            row[name] = rng.choice(values) if rng.random() < 0.9 else None
        row["length_tokens"] = rng.randint(1, 900)
        rows.append(row)
    return datasets.Dataset.from_list(rows)


ROWS_10K = synthetic_rows(10_000)


@pytest.mark.parametrize(("dataset_rate", "marker_rate"), [(0.5, 0.5), (0.3, 0.7)])
def test_realised_dropout_within_two_points(dataset_rate: float, marker_rate: float) -> None:
    config = BuildConfig(
        dataset_dropout=dataset_rate, marker_dropout=marker_rate, val_fraction=0.0, tokenizer=None
    )
    result = build_rows(ROWS_10K, TAX, config)
    assert len(result.train) == 10_000
    realised = result.report["realised"]
    assert abs(realised["dataset_dropout"] - dataset_rate) <= 0.02
    assert abs(realised["marker_dropout"] - marker_rate) <= 0.02
    # recount from the text itself, not from the builder's counters
    blocks = seen = kept = 0
    source = {r["id"]: r for r in ROWS_10K}
    for row in result.train:
        user, assistant = row["messages"][0]["content"], row["messages"][1]["content"]
        full = template.parse(assistant, TAX)
        assert full.error is None and full.response == source[row["id"]]["response"]
        given = template.parse_prompt(user, TAX)
        assert set(given.markers) <= set(full.markers)
        assert all(full.markers[k] == v for k, v in given.markers.items())
        blocks += given.has_block
        seen += len(full.markers)
        kept += len(given.markers)
    # a row keeping none of its markers has no block either: P = r * (0.1 + 0.9 r)^6 (see synthetic_rows)
    p_empty = marker_rate * (0.1 + 0.9 * marker_rate) ** 6
    assert abs(blocks / 10_000 - (1 - dataset_rate) * (1 - p_empty)) <= 0.02
    assert abs(kept / seen - (1 - dataset_rate) * (1 - marker_rate)) <= 0.02


def test_same_seed_same_bytes_and_row_order_does_not_matter(tmp_path: Path) -> None:
    rows = synthetic_rows(300)
    src = tmp_path / "a.jsonl"
    io.write_jsonl(list(rows), src)
    shuffled = tmp_path / "b.jsonl"
    io.write_jsonl(list(rows.shuffle(seed=3)), shuffled)
    config = BuildConfig(seed=7, tokenizer=None, val_fraction=0.1)
    one = build(src, tmp_path / "one", config).path
    two = build(src, tmp_path / "two", config).path
    for name in ("train.jsonl", "validation.jsonl"):
        assert (one / name).read_bytes() == (two / name).read_bytes()
    other = build(src, tmp_path / "other", BuildConfig(seed=8, tokenizer=None, val_fraction=0.1)).path
    assert (other / "train.jsonl").read_bytes() != (one / "train.jsonl").read_bytes()
    moved = build(shuffled, tmp_path / "moved", config).path

    def by_id(path: Path) -> dict[str, list]:
        rows = [
            json.loads(line)
            for name in ("train.jsonl", "validation.jsonl")
            for line in (path / name).read_text("utf-8").splitlines()
        ]
        return {r["id"]: r["messages"] for r in rows}

    assert by_id(moved) == by_id(one)


def test_baseline_has_no_marker_tag_anywhere(tmp_path: Path) -> None:
    src = tmp_path / "a.jsonl"
    io.write_jsonl(list(synthetic_rows(200)), src)
    out = build(src, tmp_path / "base", BuildConfig(baseline=True, tokenizer=None, val_fraction=0.1)).path
    text = (out / "train.jsonl").read_text(encoding="utf-8") + (out / "validation.jsonl").read_text("utf-8")
    assert "<TEMPLATE>" not in text
    for name in TAX.names:
        assert f"<{name}>" not in text and f"</{name}>" not in text
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert (
        rows[0]["messages"][0]["content"].startswith("Question")
        and "&lt;task>" in rows[0]["messages"][0]["content"]
    )
    assert json.loads((out / "build.json").read_text())["config"]["baseline"] is True


def test_markers_option_restricts_markers_and_prompt_text_cannot_forge_them() -> None:
    rows = synthetic_rows(50)
    config = BuildConfig(
        markers=("length_bucket", "source"), dataset_dropout=0.0, marker_dropout=0.0, tokenizer=None
    )
    result = build_rows(rows, TAX, config)
    for row in result.train:
        user, assistant = (m["content"] for m in row["messages"])
        markers = template.parse(assistant, TAX).markers
        assert set(markers) <= {"length_bucket", "source"}
        assert template.parse_prompt(user, TAX).markers == markers  # no dropout: all of them, only them
        assert "<task>Rewrite" not in user  # the prompt's own tag text is escaped
    with pytest.raises(MarkerError, match="unknown marker 'colour'"):
        build_rows(rows, TAX, BuildConfig(markers=("colour",), tokenizer=None))
    with pytest.raises(TreasureError, match=r"marker_dropout must be between 0 and 1, got 1\.5"):
        BuildConfig(marker_dropout=1.5, tokenizer=None)  # the field is named, not a CLI flag
    with pytest.raises(TreasureError, match="overhead_modes: unknown style 'bold'"):
        BuildConfig(overhead_modes=("bold",))


def test_bad_marker_value_names_file_line_and_field(tmp_path: Path) -> None:
    src = tmp_path / "bad.jsonl"
    src.write_text(
        '{"prompt": "a", "response": "b", "task": "Rewrite"}\n'
        '{"prompt": "c", "response": "d", "task": "Juggling"}\n',
        encoding="utf-8",
    )
    with pytest.raises(DataError) as info:
        build(src, tmp_path / "out", BuildConfig(tokenizer=None))
    assert f"{src}:2" in str(info.value) and "task" in str(info.value) and "Juggling" in str(info.value)


def test_build_dir_layout_taxonomy_from_sidecar_and_overhead(tmp_path: Path) -> None:
    from fixtures_model import short_bundled_rows

    src = write_annotated(tmp_path / "ann.jsonl", short_bundled_rows(400))
    out = build(src, tmp_path / "train", BuildConfig(seed=1, val_fraction=0.05, vocab_size=1000)).path
    for name in ("train", "validation", "train.jsonl", "validation.jsonl", "build.json", "taxonomy.yaml"):
        assert (out / name).exists(), name
    sidecar_tax = Taxonomy.load(src.with_name(src.name + ".taxonomy.yaml"))
    assert Taxonomy.load(out / "taxonomy.yaml").content_hash() == sidecar_tax.content_hash()
    assert sidecar_tax["length_bucket"].thresholds != TAX["length_bucket"].thresholds
    assert json.loads((out / "stats.json").read_text())["n_rows"] == 400
    report = json.loads((out / "build.json").read_text())
    assert report["n_train"] + report["n_validation"] == 400
    overhead = report["template_overhead"]
    assert set(overhead) == {"tiny-tags", "tiny-lines"}
    # whole marker lines as single tokens make the template cheaper than tags alone
    assert 0 < overhead["tiny-lines"]["median"] < overhead["tiny-tags"]["median"] < 1
    assert overhead["tiny-lines"]["p95"] >= overhead["tiny-lines"]["median"]


def test_cli_build_prints_rates_and_writes_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "a.jsonl"
    io.write_jsonl(list(synthetic_rows(100)), src)
    with pytest.raises(SystemExit) as info:
        main(
            ["build", str(src), "-o", str(tmp_path / "t"), "--markers", "task,source", "--tokenizer", "none"]
        )
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "built" in out and "realised dropout" in out
    assert json.loads((tmp_path / "t" / "build.json").read_text())["markers"] == ["task", "source"]
    with pytest.raises(SystemExit) as info:
        main(["build", str(src), "-o", str(tmp_path / "u"), "--markers", "colour", "--tokenizer", "none"])
    assert info.value.code == 1 and "unknown marker 'colour'" in capsys.readouterr().err


def test_input_fields_are_carried_into_the_training_set(tmp_path: Path) -> None:
    from fixtures_model import short_bundled_rows

    rows = short_bundled_rows(40)
    extra = {row["id"]: {"conversation": f"c{i}", "user_meta": {"n": i}} for i, row in enumerate(rows)}
    src = write_annotated(tmp_path / "ann.jsonl", rows)
    annotated = [json.loads(line) for line in src.open()]
    src.write_text("".join(json.dumps({**row, **extra[row["id"]]}) + "\n" for row in annotated))
    out = build(src, tmp_path / "train", BuildConfig(seed=1, val_fraction=0.2, vocab_size=1000)).path
    built = [json.loads(line) for name in ("train", "validation") for line in (out / f"{name}.jsonl").open()]
    assert len(built) == 40
    assert all({k: row[k] for k in ("conversation", "user_meta")} == extra[row["id"]] for row in built)


def test_a_build_failing_while_writing_leaves_the_earlier_train_dir_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fixtures_model import short_bundled_rows

    src = write_annotated(tmp_path / "ann.jsonl", short_bundled_rows(40))
    out = build(src, tmp_path / "train", BuildConfig(seed=1, vocab_size=1000)).path
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(TreasureError, match="already holds a training set; pass `overwrite`"):
        build(src, out, BuildConfig(seed=2, vocab_size=1000))
    monkeypatch.setattr("treasure.build.io.atomic_write_text", disk_full)
    with pytest.raises(OSError, match="No space left"):
        build(src, out, BuildConfig(seed=2, vocab_size=1000), overwrite=True)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no work dir left


def test_build_refuses_rows_that_were_never_annotated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = tmp_path / "raw.jsonl"
    io.write_jsonl([{"prompt": f"Question {i}?", "response": f"Answer {i}."} for i in range(20)], raw)
    with pytest.raises(
        TreasureError, match=r"raw\.jsonl: has no marker values: run `treasure annotate` first"
    ):
        build(raw, tmp_path / "t", BuildConfig(tokenizer=None))
    # a source column alone (set by the reader) does not make the rows annotated
    sourced = tmp_path / "sourced.jsonl"
    io.write_jsonl(
        [{"prompt": f"Q{i}?", "response": f"A{i}.", "source": "Human"} for i in range(20)], sourced
    )
    with pytest.raises(TreasureError, match="has no marker values"):
        build(sourced, tmp_path / "t", BuildConfig(tokenizer=None))
    with pytest.raises(SystemExit) as info:
        main(["build", str(raw), "-o", str(tmp_path / "t"), "--tokenizer", "none"])
    err = capsys.readouterr().err
    assert info.value.code == 1 and "run `treasure annotate` first" in err
    assert not (tmp_path / "t").exists()
    # a baseline needs no markers
    out = build(raw, tmp_path / "base", BuildConfig(baseline=True, tokenizer=None)).path
    assert (out / "build.json").is_file()


def test_build_warns_about_markers_absent_in_every_row(caplog: pytest.LogCaptureFixture) -> None:
    rows = synthetic_rows(30).remove_columns(["style"])
    with caplog.at_level("WARNING", logger="treasure.build"):
        build_rows(rows, TAX, BuildConfig(markers=("task", "style"), tokenizer=None))
    assert "marker(s) style have no value in any row" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="treasure.build"):
        build_rows(rows, TAX, BuildConfig(markers=("task",), tokenizer=None))
    assert caplog.text == ""
    with pytest.raises(TreasureError, match=r"no marker values \(asked for: style\)"):
        build_rows(rows, TAX, BuildConfig(markers=("style",), tokenizer=None))
