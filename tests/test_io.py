"""Dataset I/O: presets on real bundled rows, every input format, malformed input, rejects, atomic save."""

from __future__ import annotations

import gzip
import json

import datasets
import pytest

from treasure import io
from treasure.bundled import DATA_DIR, load_bundled
from treasure.errors import DataError, MarkerError, TreasureError


def _real(name: str, n: int = 4) -> list[dict]:
    """The first `n` records of a bundled file, as the file holds them."""
    path = DATA_DIR / name
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        if name.endswith(".jsonl.gz"):
            return [json.loads(line) for _, line in zip(range(n), handle, strict=False)]
        return json.load(handle)[:n]


def _jsonl(path, records) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


MESSAGES = [
    {"messages": [{"role": "user", "content": "Bonjour ?"}, {"role": "assistant", "content": "Salut !"}]},
    {
        "id": "chat-2",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4"},
            {"role": "user", "content": "And 3+3?"},
            {"role": "assistant", "content": "6"},
        ],
        "language": "english",
    },
]


def test_alpaca_preset_on_real_rows(tmp_path):
    records = _real("alpaca_5000.json.gz")
    result = io.load(_jsonl(tmp_path / "a.jsonl", records))
    assert result.preset == "alpaca" and len(result.dataset) == len(records)
    for row, record in zip(result.dataset, records, strict=True):
        extra = f"\n\n{record['input']}" if record["input"] else ""
        assert row["prompt"] == record["instruction"] + extra
        assert row["response"] == record["output"]
        assert row["messages"] is None and row["source"] is None and len(row["id"]) == 16
    assert any(r["input"] for r in records)  # the real sample covers the `input` case


def test_fastchat_preset_strips_preamble_and_maps_score(tmp_path):
    records = _real("long_is_more_alpaca_1k_score.json.gz", 400)
    with_input = next(r for r in records if "### Input:" in r["conversations"][0]["value"])
    records = [records[0], with_input]
    path = _jsonl(tmp_path / "f.jsonl", records)
    result = io.load(path, fields={"quality": "score"}, source="synthetic")
    rows = list(result.dataset)
    assert result.preset == "fastchat"
    assert rows[0]["prompt"] == "Answer this true or false question: The capital of France is London."
    assert rows[0]["response"] == records[0]["conversations"][1]["value"]
    assert rows[0]["id"] == records[0]["id"] and rows[0]["quality"] == records[0]["score"]
    assert rows[1]["prompt"] == (
        "Rewrite the sentence below into a clear and concise instruction\n\n"
        "Please find a way to format the document"
    )
    assert all(r["source"] == "Synthetic" and "Below is an instruction" not in r["prompt"] for r in rows)


def test_self_instruct_preset_on_real_rows():
    record = _real("self_instruct_user_oriented.jsonl.gz", 1)[0]
    result = io.load(DATA_DIR / "self_instruct_user_oriented.jsonl.gz", source="Human")
    first = result.dataset[0]
    assert result.preset == "self_instruct" and len(result.dataset) == 252
    assert first["id"] == record["id"]
    assert first["prompt"] == f"{record['instruction']}\n\n{record['instances'][0]['input']}"
    assert first["response"] == record["instances"][0]["output"]


def test_messages_preset_keeps_history_and_given_markers(tmp_path):
    result = io.load(_jsonl(tmp_path / "m.jsonl", MESSAGES))
    one, two = result.dataset
    assert result.preset == "messages"
    assert (one["prompt"], one["response"], one["messages"], one["language"]) == (
        "Bonjour ?",
        "Salut !",
        None,
        None,
    )
    assert (two["id"], two["prompt"], two["response"], two["language"]) == (
        "chat-2",
        "And 3+3?",
        "6",
        "English",
    )
    assert [t["role"] for t in two["messages"]] == ["system", "user", "assistant"]


def _formats(tmp_path, records):
    """The same records written as JSONL, .jsonl.gz, JSON array, CSV, Parquet and an HF dir."""
    out = {"jsonl": _jsonl(tmp_path / "r.jsonl", records)}
    gz = tmp_path / "r.jsonl.gz"
    gz.write_bytes(gzip.compress(out["jsonl"].read_bytes()))
    out["jsonl.gz"] = gz
    out["json"] = tmp_path / "r.json"
    out["json"].write_text(json.dumps(records), encoding="utf-8")
    ds = datasets.Dataset.from_list(records)
    out["csv"] = tmp_path / "r.csv"
    ds.to_csv(str(out["csv"]), index=False)
    out["parquet"] = tmp_path / "r.parquet"
    ds.to_parquet(str(out["parquet"]))
    out["hf"] = tmp_path / "hfdir"
    ds.save_to_disk(str(out["hf"]))
    return out


def test_every_input_format_gives_the_same_rows(tmp_path):
    records = _real("alpaca_5000.json.gz", 6)
    expected = None
    for kind, path in _formats(tmp_path, records).items():
        rows = [(r["id"], r["prompt"], r["response"]) for r in io.load(path).dataset]
        expected = expected or rows
        assert rows == expected, kind
    assert len(expected) == 6 and len({r[0] for r in expected}) == 6


def test_field_mapping_reads_other_names(tmp_path):
    path = _jsonl(tmp_path / "q.jsonl", [{"question": "Why?", "answer": "Because.", "lang": "german"}])
    row = io.load(path, fields={"prompt": "question", "response": "answer", "language": "lang"}).dataset[0]
    assert (row["prompt"], row["response"], row["language"]) == ("Why?", "Because.", "German")
    with pytest.raises(DataError, match=r"q.jsonl:1: field 'lang': invalid value 'german2'"):
        _jsonl(path, [{"question": "Why?", "answer": "Because.", "lang": "german2"}])
        io.load(path, fields={"prompt": "question", "response": "answer", "language": "lang"})


def test_unknown_preset_field_target_or_source_is_a_clear_error(tmp_path):
    path = _jsonl(tmp_path / "x.jsonl", MESSAGES)
    with pytest.raises(TreasureError, match="unknown preset 'alpacca'; valid: alpaca, fastchat"):
        io.load(path, preset="alpacca")
    with pytest.raises(TreasureError, match="unknown target 'promt'"):
        io.load(path, fields={"promt": "q"})
    with pytest.raises(MarkerError, match="invalid value 'web'"):
        io.load(path, source="web")
    with pytest.raises(DataError, match=r"x.jsonl:1: cannot detect a preset from fields \['a'\]"):
        io.load(_jsonl(path, [{"a": 1}]))


def test_ids_are_stable_and_content_based(tmp_path):
    rows = [{"prompt": "p", "response": "r"}, {"prompt": "p", "response": "r2"}]
    first = io.load(_jsonl(tmp_path / "a.jsonl", rows)).dataset["id"]
    again = io.load(_jsonl(tmp_path / "b.jsonl", list(reversed(rows)))).dataset["id"]
    assert first == list(reversed(again)) and first[0] != first[1]


GOOD = {"instruction": "Say hi", "input": "", "output": "Hi"}
LATIN1_E = b"\xe9"  # "é" in Latin-1: invalid as UTF-8


def _bad_lines(tmp_path):
    """JSONL with 3 valid rows around each kind of bad line; returns (path, expected errors)."""
    lines = [
        json.dumps(GOOD).encode(),
        b'{"instruction": "x", "output": ',
        json.dumps({"instruction": "no output"}).encode(),
        json.dumps({**GOOD, "output": 42}).encode(),
        b'{"instruction": "caf\xe9", "output": "x"}',
        json.dumps({**GOOD, "output": "x" * 1_100_000}).encode(),
        json.dumps({**GOOD, "instruction": "Say bye"}).encode(),
        b"[1, 2]",
        json.dumps({**GOOD, "instruction": "Say yo", "style": "Pirate"}).encode(),
        b"",
        json.dumps({**GOOD, "instruction": "Say ok"}).encode(),
    ]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    errors = [
        f"{path}:2: invalid JSON: Expecting value (column 32)",
        f"{path}:3: field 'output': missing",
        f"{path}:4: field 'output': expected text, got int",
        f"{path}:5: invalid UTF-8 at byte {lines[4].index(LATIN1_E)} of the line",
        f"{path}:6: row is {len(lines[5]) + 1} bytes, over the limit of 1000000",
        f"{path}:8: expected a JSON object, got list",
        f"{path}:9: field 'style': invalid value 'Pirate' for marker 'style'; valid: Formal, Informal, "
        "Custom",
    ]
    return path, errors


@pytest.mark.parametrize("index", range(7))
def test_each_malformed_row_raises_with_file_line_and_field(tmp_path, index):
    path, errors = _bad_lines(tmp_path)
    bad_line = int(errors[index].split(":")[1])
    lines = path.read_bytes().split(b"\n")
    single = tmp_path / "one.jsonl"
    single.write_bytes(lines[0] + b"\n" + lines[bad_line - 1] + b"\n")
    with pytest.raises(DataError) as info:
        io.load(single, preset="alpaca")
    expected = errors[index].replace(f"{path}:{bad_line}:", f"{single}:2:")
    assert str(info.value) == expected and info.value.line == 2


def test_skip_invalid_keeps_every_valid_row_and_writes_rejects(tmp_path):
    path, errors = _bad_lines(tmp_path)
    result = io.load(path, preset="alpaca", skip_invalid=True)
    assert [r["prompt"] for r in result.dataset] == ["Say hi", "Say bye", "Say ok"]
    assert [str(e) for e in result.rejected] == errors
    assert result.rejects_path == tmp_path / "bad.jsonl.rejects.jsonl"
    rejects = [json.loads(line) for line in result.rejects_path.read_text(encoding="utf-8").splitlines()]
    assert [(r["line"], r["field"]) for r in rejects] == [
        (2, None), (3, "output"), (4, "output"), (5, None), (6, None), (8, None), (9, "style")
    ]  # fmt: skip
    assert rejects[2]["record"] == {**GOOD, "output": 42}  # the raw record travels with its error
    # a line that could not be parsed keeps its text
    assert rejects[0]["record"] == '{"instruction": "x", "output": '
    assert rejects[3]["record"] == '{"instruction": "caf\ufffd", "output": "x"}'  # bad bytes as U+FFFD
    assert rejects[4]["record"].startswith('{"instruction": "Say hi"')
    assert rejects[4]["record"].endswith("xxx... [cut]")  # over the size limit: its start
    assert len(rejects[4]["record"]) < io.REJECT_RAW_CHARS + 100
    assert rejects[5]["record"] == [1, 2]
    assert all(r["record"] is not None for r in rejects)
    custom = io.load(path, preset="alpaca", skip_invalid=True, rejects_path=tmp_path / "out" / "rej.jsonl")
    assert custom.rejects_path.exists() and len(custom.rejects_path.read_text().splitlines()) == 7


@pytest.mark.parametrize("name", ["empty.jsonl", "empty.json", "empty.csv", "blank.jsonl"])
def test_empty_files(tmp_path, name):
    path = tmp_path / name
    path.write_text("\n\n" if name.startswith("blank") else "", encoding="utf-8")
    with pytest.raises(DataError, match=rf"{path}: empty file: no rows"):
        io.load(path, skip_invalid=True)


def test_all_rows_invalid_is_an_error_naming_the_first(tmp_path):
    path = _jsonl(tmp_path / "x.jsonl", [{"instruction": "a"}, {"instruction": "b"}])
    with pytest.raises(
        DataError,
        match=r"no valid rows \(2 rejected; rejects in .*x.jsonl.rejects.jsonl\); "
        r"first: .*x.jsonl:1: field 'output': missing",
    ):
        io.load(path, preset="alpaca", skip_invalid=True)


def test_json_array_errors_name_line_or_item(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": }\n]', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.json:3: invalid JSON"):
        io.load(bad)
    items = tmp_path / "items.json"
    items.write_text(json.dumps([GOOD, {"instruction": "x", "output": ""}, GOOD]), encoding="utf-8")
    with pytest.raises(DataError, match=r"items.json: item 2: field 'output': empty"):
        io.load(items)
    utf = tmp_path / "utf.json"
    utf.write_bytes(b'[{"instruction": "a",\n "output": "\xff"}]')
    with pytest.raises(DataError, match=r"utf.json:2: invalid UTF-8"):
        io.load(utf)


def test_csv_errors_name_the_line(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text('prompt,response\n"multi\nline",ok\nonly-one-field\nfine,yes\n', encoding="utf-8")
    result = io.load(path, skip_invalid=True, write_rejects=False)
    assert [r["prompt"] for r in result.dataset] == ["multi\nline", "fine"]
    assert [str(e) for e in result.rejected] == [f"{path}:4: has 1 fields, the header has 2"]
    big = tmp_path / "big.csv"
    big.write_text("prompt,response\nhi," + "x" * 1_200_000 + "\nok,fine\n", encoding="utf-8")
    result = io.load(big, skip_invalid=True, write_rejects=False)
    assert len(result.dataset) == 1 and "big.csv:2: row is" in str(result.rejected[0])


def test_parquet_and_hf_dir_errors_name_the_row(tmp_path):
    ds = datasets.Dataset.from_list([GOOD, {**GOOD, "output": ""}])
    ds.to_parquet(str(tmp_path / "p.parquet"))
    with pytest.raises(DataError, match=r"p.parquet: row 2: field 'output': empty"):
        io.load(tmp_path / "p.parquet")
    (tmp_path / "notadir").mkdir()
    with pytest.raises(DataError, match=r"not a datasets\.save_to_disk directory"):
        io.load(tmp_path / "notadir")
    with pytest.raises(DataError, match="unknown format"):
        io.load(_jsonl(tmp_path / "x.txt", [GOOD]))


def test_bom_and_truncated_gzip(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\n")
    assert io.load(path).dataset[0]["response"] == "Hi"
    broken = tmp_path / "t.jsonl.gz"
    broken.write_bytes(gzip.compress((json.dumps(GOOD) + "\n").encode() * 50)[:-20])
    with pytest.raises(DataError, match=r"t\.jsonl\.gz: cannot read file"):
        io.load(broken)


@pytest.mark.parametrize("name", ["out.jsonl", "out.jsonl.gz", "out.parquet", "outdir"])
def test_save_round_trips_atomically(tmp_path, name):
    ds = io.load(_jsonl(tmp_path / "m.jsonl", MESSAGES)).dataset
    path = io.save(ds, tmp_path / "sub" / name)
    if name.endswith(".gz"):
        assert gzip.decompress(path.read_bytes()).startswith(b"{")
    again = io.load(path).dataset
    assert again["id"] == ds["id"] and again["prompt"] == ds["prompt"] and again["messages"] == ds["messages"]
    io.save(ds, path)  # overwrite in place
    assert sorted(p.name for p in path.parent.iterdir()) == [name]  # no temp files left


def test_save_rejects_unsupported_names_and_cleans_up(tmp_path):
    ds = datasets.Dataset.from_list([GOOD])
    for name in ["out.json", "out.csv", "out.parquet.gz"]:
        with pytest.raises(DataError, match=r"save writes \.jsonl, \.jsonl\.gz, \.parquet or a directory"):
            io.save(ds, tmp_path / name)
    with pytest.raises(TypeError):
        io.write_jsonl([{"x": object()}], tmp_path / "w.jsonl")
    assert list(tmp_path.iterdir()) == []


def test_load_bundled_reads_every_training_file():
    ds, rejected = load_bundled()
    assert len(ds) == 9250 and len(set(ds["id"])) == 9250
    assert [str(e).split("data/")[-1] for e in rejected] == [
        "alpaca_5000.json.gz: item 2336: field 'output': empty",
        "alpaca_5000.json.gz: item 4659: field 'output': empty",
    ]
    assert set(ds["source"]) == {"Synthetic", "Human"}
    assert not any(p.startswith("Below is an instruction") for p in ds["prompt"])
    quality = [q for q, f in zip(ds["quality"], ds["file"], strict=True) if f.startswith("evol")]
    assert len(quality) == 1000 and all(q is not None for q in quality)


def test_an_empty_saved_split_loads_back_with_its_columns(tmp_path):
    """A small set's validation split can have no row; `datasets` saves it without an .arrow file."""
    empty = datasets.Dataset.from_list([{"prompt": "p", "n": 1}]).select([])
    empty.save_to_disk(str(tmp_path / "validation"))
    loaded = io.load_from_disk(tmp_path / "validation")
    assert len(loaded) == 0 and loaded.features == empty.features
