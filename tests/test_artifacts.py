"""`treasure.artifacts`: the docs list exactly its files; load/save round-trip byte for byte; a missing or
damaged stage file gives one line naming it, from the library and from the command line."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import datasets
import pytest

from treasure import artifacts
from treasure.annotate import AnnotateConfig, AnnotateFileConfig, annotate_file
from treasure.artifacts import (
    BUILD,
    STATS,
    TAXONOMY,
    TRAIN,
    AnnotatedData,
    BuildReport,
    ModelDir,
    Stats,
    TrainDir,
    TrainReport,
    sidecar,
)
from treasure.build import BuildConfig, build
from treasure.cli import main
from treasure.errors import DataError, TreasureError
from treasure.generate import Generator
from treasure.taxonomy import Taxonomy, with_thresholds

ARCHITECTURE = Path(__file__).parents[1] / "docs" / "architecture.md"
PLACES = {
    "ANNOTATED": artifacts.ANNOTATED_FILES,
    "TRAIN_DIR/": artifacts.TRAIN_DIR_FILES,
    "MODEL_DIR/": artifacts.MODEL_DIR_FILES,
    "REPORT_DIR/": artifacts.REPORT_DIR_FILES,
}
TAX = with_thresholds(Taxonomy.default(), "length_bucket", (7, 21))  # not the default: a sidecar was read
BUILD_DATA = {
    "config": {"dataset_dropout": 0.5, "markers": ["task", "source"], "baseline": False, "seed": 0},
    "markers": ["task", "source"],
    "n_rows": 3,
    "n_train": 2,
    "n_validation": 1,
    "realised": {"dataset_dropout": 0.5, "marker_dropout": None},
    "counts": {"rows_with_markers": 3},
    "taxonomy_sha256": "abc",
    "input": {"path": "runs/données.jsonl", "sha256": "def"},
    "template_overhead": {},
}
TRAIN_DATA = {
    "config": {"train_dir": "runs/données"},
    "seed": 0,
    "marked": True,
    "n_train_rows": 2,
    "steps": 4,
    "losses": {"initial_eval": 3.5, "final_train": 1.25, "final_eval": None},
    "train_tokens_per_s": 812.5,
}
STATS_DATA = {"n_rows": 3, "thresholds": {"length_bucket": [7, 21]}, "markers": {}, "rejected": 1}


def documented_files() -> dict[str, set[str]]:
    """The files of ANNOTATED, TRAIN_DIR and MODEL_DIR that the docs' table lists, by place.

    A row's first cell names files in backticks; the first carries the place (`TRAIN_DIR/train/`), the
    others are in the same place (`validation/`). A row about the place itself (`ANNOTATED`, the rows;
    `MODEL_DIR/`, the HF files) and rows of other places (the model cache, REPORT_DIR) are left out.
    """
    section = ARCHITECTURE.read_text(encoding="utf-8").split("## 6. Files between the stages", 1)[1]
    section = section.split("\n## ", 1)[0]
    found: dict[str, set[str]] = {place: set() for place in PLACES}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        names = re.findall(r"`([^`]+)`", line.split("|")[1])
        place = next((p for p in PLACES if names[0].startswith(p)), None)
        if place is None or names[0] == place:
            continue
        found[place].update([names[0].removeprefix(place), *names[1:]])
    return found


def test_the_docs_list_exactly_the_files_of_the_code() -> None:
    found = documented_files()
    for place, files in PLACES.items():
        assert found[place] == set(files), place
    assert found["MODEL_DIR/"] >= {BUILD, TRAIN}  # what the issue found missing


def model_dir(tmp_path: Path, **files: bytes) -> Path:
    """A hand-made MODEL_DIR with treasure's four files (no weights: they are read after these)."""
    path = tmp_path / "m"
    ModelDir(path, TAX, Stats(STATS_DATA), BuildReport(BUILD_DATA), TrainReport(TRAIN_DATA)).save()
    for name, content in files.items():
        (path / name.replace("_", ".")).write_bytes(content)
    return path


def test_model_dir_round_trips_in_the_format_the_stages_wrote(tmp_path: Path) -> None:
    path = model_dir(tmp_path)
    loaded = ModelDir.load(path)
    assert loaded.taxonomy is not None and loaded.taxonomy.content_hash() == TAX.content_hash()
    assert (loaded.stats.data, loaded.build_report.data, loaded.train_report.data) == (
        STATS_DATA,
        BUILD_DATA,
        TRAIN_DATA,
    )
    # byte for byte what build, annotate (UTF-8 as is) and train (ASCII escapes) have always written
    assert (path / BUILD).read_text("utf-8") == json.dumps(BUILD_DATA, indent=2, ensure_ascii=False) + "\n"
    assert (path / STATS).read_text("utf-8") == json.dumps(STATS_DATA, indent=2, ensure_ascii=False) + "\n"
    assert (path / TRAIN).read_text("utf-8") == json.dumps(TRAIN_DATA, indent=2) + "\n"
    assert "données" in (path / BUILD).read_text("utf-8") and "donn\\u00e9es" in (path / TRAIN).read_text()
    report = loaded.build_report
    assert (report.n_train, report.n_validation, report.baseline) == (2, 1, False)
    assert report.trained_markers == {"task", "source"} and report.template_overhead == {}
    assert loaded.train_report.marked and loaded.train_report.steps == 4
    assert loaded.train_report.losses["final_train"] == 1.25
    assert (loaded.stats.n_rows, loaded.stats.rejected, loaded.stats.thresholds) == (
        3,
        1,
        {"length_bucket": [7, 21]},
    )


def test_a_model_dir_without_treasure_files_loads_empty(tmp_path: Path) -> None:
    loaded = ModelDir.load(tmp_path)  # a registry base model has only HF files
    assert (loaded.taxonomy, loaded.build_report, loaded.train_report, loaded.stats.data) == (
        None,
        None,
        None,
        {},
    )
    with pytest.raises(TreasureError, match=r"nowhere: model dir not found"):
        ModelDir.load(tmp_path / "nowhere")


DAMAGE = [
    (b"{broken", r"not valid JSON \(line 1, column 2\): Expecting property name enclosed in double quotes"),
    (b'{"a": 1,\n  "b": 2,\n  "c" 3}', r"not valid JSON \(line 3, column 7\): Expecting ':' delimiter"),
    (b"\xff\xfe not json", r"not UTF-8 text \(invalid start byte at byte 0\)"),
    (b"[1, 2]", r"not a JSON object \(found a list\)"),
]


@pytest.mark.parametrize("name", [BUILD, TRAIN, STATS])
@pytest.mark.parametrize(("content", "message"), DAMAGE)
def test_a_damaged_model_dir_file_is_one_line_naming_it(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = model_dir(tmp_path)
    (path / name).write_bytes(content)
    with pytest.raises(DataError) as info:
        Generator.from_model_dir(path)  # fails before it loads any weights
    text = str(info.value)
    assert re.fullmatch(re.escape(str(path / name)) + ": " + message, text), text


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        (BUILD, {"n_train": None}, "missing key 'n_train'"),
        (BUILD, {"config": None}, "missing key 'config'"),
        (BUILD, {"n_validation": "1"}, "'n_validation' should be an integer, not a string"),
        (BUILD, {"n_train": True}, "'n_train' should be an integer, not true or false"),
        (BUILD, {"config": {"markers": "task"}}, "'config.markers' should be a list or null, not a string"),
        (TRAIN, {"marked": None}, "missing key 'marked'"),
        (TRAIN, {"marked": "yes"}, "'marked' should be true or false, not a string"),
        (TRAIN, {"losses": [1.0]}, "'losses' should be an object, not a list"),
        (STATS, {"n_rows": 2.5}, "'n_rows' should be an integer, not a number"),
    ],
)
def test_an_incomplete_report_names_the_file_and_key(
    tmp_path: Path, name: str, change: dict[str, Any], message: str
) -> None:
    data = {**{BUILD: BUILD_DATA, TRAIN: TRAIN_DATA, STATS: STATS_DATA}[name], **change}
    path = model_dir(tmp_path)
    (path / name).write_text(json.dumps({k: v for k, v in data.items() if v is not None}), encoding="utf-8")
    with pytest.raises(DataError) as info:
        ModelDir.load(path)
    assert str(info.value) == f"{path / name}: {message}"


def train_dir(tmp_path: Path, build_json: str) -> Path:
    """A hand-made TRAIN_DIR: split dirs (empty: they are read later), taxonomy, the given build.json."""
    path = tmp_path / "t"
    for name in ("train", "validation"):
        (path / name).mkdir(parents=True)
    TAX.save(path / TAXONOMY)
    (path / BUILD).write_text(build_json, encoding="utf-8")
    return path


def test_a_damaged_or_incomplete_train_dir_is_named(tmp_path: Path) -> None:
    path = train_dir(tmp_path, "{\n  broken")
    with pytest.raises(
        DataError, match=rf"^{re.escape(str(path / BUILD))}: not valid JSON \(line 2, column 3\)"
    ):
        TrainDir.load(path)
    (path / BUILD).write_text(json.dumps({"config": {}, "n_validation": 1}), encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path / BUILD))}: missing key 'n_train'$"):
        TrainDir.load(path)
    (path / TAXONOMY).unlink()
    with pytest.raises(TreasureError, match=r"t: not a training set \(no taxonomy.yaml\); make one with"):
        TrainDir.load(path)


def test_a_damaged_split_is_named(tiny_train_dir: Path, tmp_path: Path) -> None:
    path = shutil.copytree(tiny_train_dir, tmp_path / "t")
    next((path / "train").glob("data-*.arrow")).write_bytes(b"garbage" * 100)
    loaded = TrainDir.load(path)  # the small files are fine
    with pytest.raises(DataError, match=r"t/train: "):
        loaded.split("train")


def annotated_rows(path: Path) -> Path:
    """20 annotated JSONL rows with the taxonomy and stats `treasure annotate` writes beside them."""
    task = TAX["task"].values[0]
    rows = [{"id": f"r{i}", "prompt": f"Q{i}?", "response": f"A{i}.", "task": task} for i in range(20)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    AnnotatedData(path, TAX, Stats(STATS_DATA)).save()
    return path


def test_build_returns_its_train_dir_and_the_files_round_trip(tmp_path: Path) -> None:
    src = annotated_rows(tmp_path / "données.jsonl")
    built = build(src, tmp_path / "t", BuildConfig(tokenizer=None, val_fraction=0.2))
    assert built.path == tmp_path / "t"
    loaded = TrainDir.load(built.path)
    assert loaded.build_report.data == built.build_report.data
    assert built.build_report.data["input"]["path"] == str(src)
    assert built.build_report.n_train + built.build_report.n_validation == 20
    assert loaded.taxonomy.content_hash() == TAX.content_hash() == built.taxonomy.content_hash()
    assert loaded.stats.data == STATS_DATA
    for report, name in ((loaded.build_report, BUILD), (loaded.stats, STATS)):
        assert report.text() == (built.path / name).read_text("utf-8")  # saved back unchanged
    assert len(loaded.split("train")) == built.build_report.n_train


@pytest.mark.parametrize("layout", ["beside", "suffix", "inside"])
def test_annotated_data_finds_its_taxonomy_and_stats(tmp_path: Path, layout: str) -> None:
    if layout == "inside":  # an HF dataset dir with the files in it
        rows = tmp_path / "hf"
        datasets.Dataset.from_list([{"prompt": "a", "response": "b"}]).save_to_disk(str(rows))
    else:
        rows = tmp_path / "rows.jsonl"
        rows.write_text('{"prompt": "a", "response": "b"}\n', encoding="utf-8")
    tax_file, stats_file = {
        "beside": (sidecar(rows, TAXONOMY), sidecar(rows, STATS)),  # rows.jsonl.taxonomy.yaml
        "suffix": (tmp_path / "rows.taxonomy.yaml", tmp_path / "rows.stats.json"),
        "inside": (rows / TAXONOMY, rows / STATS),
    }[layout]
    TAX.save(tax_file)
    Stats(STATS_DATA).save(stats_file)
    loaded = AnnotatedData.load(rows)
    assert loaded.taxonomy.content_hash() == TAX.content_hash() and loaded.stats.data == STATS_DATA
    assert len(loaded.rows()) == 1


def test_annotated_data_without_sidecars_and_with_damaged_stats(tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"prompt": "a", "response": "b"}\n', encoding="utf-8")
    bare = AnnotatedData.load(rows)
    assert bare.taxonomy.content_hash() == Taxonomy.default().content_hash() and bare.stats.data == {}
    sidecar(rows, STATS).write_text('{"n_rows": 1,}', encoding="utf-8")
    with pytest.raises(DataError, match=r"rows\.jsonl\.stats\.json: not valid JSON \(line 1, column 14\)"):
        AnnotatedData.load(rows)
    with pytest.raises(TreasureError, match=r"missing\.jsonl: annotated data not found"):
        AnnotatedData.load(tmp_path / "missing.jsonl")


def test_annotate_file_returns_what_it_wrote(tmp_path: Path, sample_jsonl: Path) -> None:
    out = tmp_path / "out.jsonl"
    config = AnnotateFileConfig(annotate=AnnotateConfig(annotators=("rules",), progress=False))
    annotated = annotate_file(sample_jsonl, out, config)
    assert annotated.path == out and annotated.stats.n_rows == 60 and annotated.stats.rejected == 0
    assert annotated.stats_file.read_text("utf-8") == annotated.stats.text()
    loaded = AnnotatedData.load(out)
    assert loaded.stats.data == annotated.stats.data
    assert loaded.taxonomy.content_hash() == annotated.taxonomy.content_hash()
    assert not annotated.rejects_file.exists() and not annotated.work_dir.exists()


def test_train_returns_its_model_dir_and_copies_the_build_files(
    tiny_model_dir: Path, tiny_train_dir: Path
) -> None:
    loaded = ModelDir.load(tiny_model_dir)
    for name in (BUILD, STATS):  # carried over unchanged from TRAIN_DIR
        assert (tiny_model_dir / name).read_bytes() == (tiny_train_dir / name).read_bytes()
    for report, name in ((loaded.build_report, BUILD), (loaded.stats, STATS), (loaded.train_report, TRAIN)):
        assert report is not None and report.text() == (tiny_model_dir / name).read_text("utf-8")
    assert loaded.train_report.marked and loaded.train_report.steps > 0
    assert loaded.train_report.data["data_sha256"] == TrainDir.load(tiny_train_dir).data_sha256()


# ---------------------------------------------------------------- from the command line


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    return info.value.code, capsys.readouterr().err


def one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_cli_generate_names_a_damaged_build_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = model_dir(tmp_path, build_json=b'{"config": {},\n "n_train": 2,,\n}')
    code, err = run(capsys, "generate", str(path), "--prompt", "hello")
    assert code == 1
    where = "(line 2, column 15): Expecting property name enclosed in double quotes"
    assert one_line(err) == f"error: {path / BUILD}: not valid JSON {where}"


def test_cli_train_names_an_incomplete_build_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = train_dir(tmp_path, json.dumps({"config": {}, "n_train": 2}))
    code, err = run(capsys, "train", str(path), "-o", str(tmp_path / "m"))
    assert code == 1
    assert one_line(err) == f"error: {path / BUILD}: missing key 'n_validation'"
    assert not (tmp_path / "m").exists() and [p.name for p in tmp_path.iterdir()] == ["t"]  # no work dir left


def test_cli_build_names_a_damaged_stats_sidecar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = annotated_rows(tmp_path / "a.jsonl")
    sidecar(src, STATS).write_bytes(b"\xff")
    code, err = run(capsys, "build", str(src), "-o", str(tmp_path / "t"), "--tokenizer", "none")
    assert code == 1
    assert one_line(err).startswith(f"error: {sidecar(src, STATS)}: not UTF-8 text")
    assert not (tmp_path / "t").exists()
