"""Read and write datasets; normalise rows to one schema through presets and field mappings.

Row schema: `id`, `prompt`, `response`, `source`, optional `messages` (earlier chat turns) and any
given markers (columns named exactly as a taxonomy marker). Readers take JSONL (optionally .gz), JSON
arrays, CSV, Parquet and `datasets.save_to_disk` directories. Errors name the file, line and field.
Writes are atomic (temp file + rename).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from treasure.errors import DataError, MarkerError
from treasure.taxonomy import Taxonomy

MAX_ROW_BYTES = 1_000_000
FASTCHAT_PREAMBLE_END = "### Instruction:"
ROLE_ALIASES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
}


@dataclass
class LoadResult:
    """A loaded, normalised dataset with the preset used and the rows rejected on the way."""

    dataset: datasets.Dataset
    preset: str
    rejected: list[DataError] = field(default_factory=list)
    rejects_path: Path | None = None


# ---------------------------------------------------------------- raw records


def _open_text(path: Path) -> io.BufferedReader:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _base_suffix(path: Path) -> str:
    suffixes = [s for s in path.suffixes if s != ".gz"]
    return suffixes[-1].lower() if suffixes else ""


def iter_records(path: str | Path, max_row_bytes: int = MAX_ROW_BYTES) -> Iterator[tuple[int, Any]]:
    """Yield (line or item number, record) from a data file or HF dataset dir.

    A malformed record is yielded as a `DataError` in place of the record so callers can skip it
    and go on; a file that cannot be read at all raises `DataError`.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(str(path), "file not found")
    if path.is_dir():
        yield from _iter_hf_dir(path)
        return
    kind = _base_suffix(path)
    if kind in (".jsonl", ".ndjson"):
        yield from _iter_jsonl(path, max_row_bytes)
    elif kind == ".json":
        yield from _iter_json_array(path, max_row_bytes)
    elif kind == ".csv":
        yield from _iter_csv(path)
    elif kind == ".parquet":
        yield from _iter_parquet(path)
    else:
        raise DataError(str(path), "unknown format; use .jsonl, .json, .csv, .parquet or an HF dir")


def _iter_jsonl(path: Path, max_row_bytes: int) -> Iterator[tuple[int, Any]]:
    seen = False
    with _open_text(path) as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            seen = True
            if len(raw) > max_row_bytes:
                yield (
                    number,
                    DataError(
                        str(path), f"row is {len(raw)} bytes, over the limit of {max_row_bytes}", number
                    ),
                )
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield number, DataError(str(path), f"invalid UTF-8 at byte {exc.start}", number)
                continue
            try:
                yield number, json.loads(text)
            except json.JSONDecodeError as exc:
                yield number, DataError(str(path), f"invalid JSON: {exc.msg} (column {exc.colno})", number)
    if not seen:
        raise DataError(str(path), "empty file: no rows")


def _iter_json_array(path: Path, max_row_bytes: int) -> Iterator[tuple[int, Any]]:
    with _open_text(path) as handle:
        blob = handle.read()
    try:
        data = json.loads(blob.decode("utf-8"))
    except UnicodeDecodeError as exc:
        line = blob[: exc.start].count(b"\n") + 1
        raise DataError(str(path), f"invalid UTF-8 at byte {exc.start}", line) from None
    except json.JSONDecodeError as exc:
        if not blob.strip():
            raise DataError(str(path), "empty file: no rows") from None
        raise DataError(str(path), f"invalid JSON: {exc.msg}", exc.lineno) from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not data:
        raise DataError(str(path), "expected a non-empty JSON array of objects")
    for index, record in enumerate(data, start=1):
        size = len(json.dumps(record, ensure_ascii=False).encode())
        if size > max_row_bytes:
            yield (
                index,
                DataError(
                    str(path), f"row is {size} bytes, over the limit of {max_row_bytes}", index, unit="item"
                ),
            )
        else:
            yield index, record


def _iter_csv(path: Path) -> Iterator[tuple[int, Any]]:
    with _open_text(path) as handle:
        try:
            text = handle.read().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(str(path), f"invalid UTF-8 at byte {exc.start}") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    seen = False
    for record in reader:
        seen = True
        yield reader.line_num, dict(record)
    if not seen:
        raise DataError(str(path), "empty file: no rows")


def _iter_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DataError(str(path), f"not a readable Parquet file: {exc}") from None
    if table.num_rows == 0:
        raise DataError(str(path), "empty file: no rows")
    yield from enumerate(table.to_pylist(), start=1)


def _iter_hf_dir(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:  # datasets raises FileNotFoundError/ValueError for a non-dataset dir
        raise DataError(str(path), f"not a datasets.save_to_disk directory: {exc}") from None
    if isinstance(loaded, datasets.DatasetDict):
        loaded = loaded["train"] if "train" in loaded else next(iter(loaded.values()))
    if len(loaded) == 0:
        raise DataError(str(path), "empty dataset: no rows")
    yield from enumerate(loaded, start=1)


# ---------------------------------------------------------------- presets


def _need_str(record: Mapping[str, Any], key: str, allow_empty: bool = False) -> str:
    if key not in record or record[key] is None:
        raise KeyError(key)
    value = record[key]
    if not isinstance(value, str):
        raise TypeError(f"field '{key}': expected text, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise ValueError(f"field '{key}': empty")
    return value


def _alpaca(record: Mapping[str, Any]) -> dict[str, Any]:
    instruction = _need_str(record, "instruction")
    extra = record.get("input") or ""
    if not isinstance(extra, str):
        raise TypeError(f"field 'input': expected text, got {type(extra).__name__}")
    prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    return {"prompt": prompt, "response": _need_str(record, "output")}


def strip_preamble(text: str) -> str:
    """Remove the Alpaca "Below is an instruction ... ### Instruction:" wrapper FastChat sets carry."""
    if text.startswith("Below is an instruction") and FASTCHAT_PREAMBLE_END in text:
        text = text.split(FASTCHAT_PREAMBLE_END, 1)[1]
        text = text.split("### Response:", 1)[0]
    return text.strip()


def _turns(turns: Any, role_key: str, text_key: str, field_name: str) -> list[dict[str, str]]:
    if not isinstance(turns, list) or not turns:
        raise TypeError(f"field '{field_name}': expected a non-empty list of turns")
    out = []
    for turn in turns:
        if not isinstance(turn, dict) or not isinstance(turn.get(text_key), str):
            raise TypeError(f"field '{field_name}': each turn needs '{role_key}' and text '{text_key}'")
        role = ROLE_ALIASES.get(str(turn.get(role_key, "")).lower())
        if role is None:
            raise ValueError(f"field '{field_name}': unknown role {turn.get(role_key)!r}")
        out.append({"role": role, "content": turn[text_key]})
    return out


def _chat_row(turns: list[dict[str, str]], field_name: str) -> dict[str, Any]:
    last_assistant = max((i for i, t in enumerate(turns) if t["role"] == "assistant"), default=-1)
    if last_assistant < 1 or turns[last_assistant - 1]["role"] != "user":
        raise ValueError(f"field '{field_name}': needs a user turn followed by an assistant turn")
    row = {
        "prompt": turns[last_assistant - 1]["content"],
        "response": turns[last_assistant]["content"],
    }
    history = turns[: last_assistant - 1]
    row["messages"] = history or None
    return row


def _fastchat(record: Mapping[str, Any]) -> dict[str, Any]:
    if "conversations" not in record:
        raise KeyError("conversations")
    turns = _turns(record["conversations"], "from", "value", "conversations")
    for turn in turns:
        if turn["role"] == "user":
            turn["content"] = strip_preamble(turn["content"])
    return _chat_row(turns, "conversations")


def _messages(record: Mapping[str, Any]) -> dict[str, Any]:
    if "messages" not in record:
        raise KeyError("messages")
    return _chat_row(_turns(record["messages"], "role", "content", "messages"), "messages")


def _self_instruct(record: Mapping[str, Any]) -> dict[str, Any]:
    instances = record.get("instances")
    if not isinstance(instances, list) or not instances or not isinstance(instances[0], dict):
        raise KeyError("instances")
    first = instances[0]
    return _alpaca(
        {
            "instruction": record.get("instruction"),
            "input": first.get("input", ""),
            "output": first.get("output"),
        }
    )


def _plain(record: Mapping[str, Any]) -> dict[str, Any]:
    return {"prompt": _need_str(record, "prompt"), "response": _need_str(record, "response")}


PRESETS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "alpaca": _alpaca,
    "fastchat": _fastchat,
    "messages": _messages,
    "self_instruct": _self_instruct,
    "plain": _plain,
}
PRESET_KEYS = {
    "fastchat": {"conversations"},
    "messages": {"messages"},
    "self_instruct": {"instruction", "instances"},
    "alpaca": {"instruction", "output"},
    "plain": {"prompt", "response"},
}


def detect_preset(record: Mapping[str, Any]) -> str | None:
    """The first preset whose required keys are all in `record`, else None."""
    for name, keys in PRESET_KEYS.items():
        if keys <= set(record):
            return name
    return None


def row_id(row: Mapping[str, Any]) -> str:
    """Stable id from content: sha256 of prompt and response (first 16 hex digits)."""
    blob = json.dumps([row.get("prompt"), row.get("response")], ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def normalise(
    record: Any,
    preset: str,
    fields: Mapping[str, str] | None = None,
    taxonomy: Taxonomy | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """Turn one raw record into a schema row. `fields` maps schema/marker name → input field.

    Raises KeyError (missing field), TypeError (wrong type), ValueError or MarkerError (bad value).
    """
    if not isinstance(record, Mapping):
        raise TypeError(f"expected a JSON object, got {type(record).__name__}")
    tax = taxonomy or Taxonomy.default()
    fields = dict(fields or {})
    renamed = dict(record)
    for target, origin in fields.items():
        if origin not in record:
            raise KeyError(origin)
        renamed[target] = record[origin]
    row = PRESETS[preset](renamed)
    raw_id = renamed.get("id")
    row["id"] = str(raw_id) if raw_id not in (None, "") else row_id(row)
    row.setdefault("messages", None)
    for name in tax.names:
        value = renamed.get(name)
        if value is None or value == "":
            continue
        try:
            row[name] = tax.canonical(name, value)
        except MarkerError as exc:
            raise ValueError(f"field '{name}': {exc}") from None
    if source is not None:
        row["source"] = tax.canonical("source", source)
    return row


def load(
    path: str | Path,
    preset: str | None = None,
    fields: Mapping[str, str] | None = None,
    taxonomy: Taxonomy | None = None,
    source: str | None = None,
    skip_invalid: bool = False,
    rejects_path: str | Path | None = None,
    max_row_bytes: int = MAX_ROW_BYTES,
    id_prefix: str = "",
    write_rejects: bool = True,
) -> LoadResult:
    """Read and normalise a dataset file.

    Without `skip_invalid` the first bad row raises `DataError` (file:line: field: problem). With it,
    bad rows are skipped, counted and (unless `write_rejects` is False) written to `rejects_path`
    (default: `<path>.rejects.jsonl`).
    """
    path = Path(path)
    unit = "line" if _base_suffix(path) in (".jsonl", ".ndjson", ".csv") else "row"
    unit = "item" if _base_suffix(path) == ".json" else unit
    rows: list[dict[str, Any]] = []
    rejected: list[DataError] = []
    for number, record in iter_records(path, max_row_bytes):
        try:
            if isinstance(record, DataError):
                raise record
            if preset is None:
                preset = (
                    detect_preset({**record, **{k: True for k in (fields or {})}})
                    if isinstance(record, Mapping)
                    else None
                )
                if preset is None:
                    keys = sorted(record) if isinstance(record, Mapping) else type(record).__name__
                    raise DataError(
                        str(path),
                        f"cannot detect a preset from fields {keys}; pass "
                        f"--preset ({', '.join(PRESETS)}) or --field",
                        number,
                        unit=unit,
                    )
            row = normalise(record, preset, fields, taxonomy, source)
            row["id"] = id_prefix + row["id"]
            rows.append(row)
        except DataError as exc:
            error = exc
        except KeyError as exc:
            error = DataError(str(path), "missing", number, str(exc.args[0]), unit=unit)
        except (TypeError, ValueError) as exc:
            error = DataError(str(path), str(exc), number, unit=unit)
        else:
            continue
        if not skip_invalid:
            raise error
        rejected.append(error)
    if preset is None:
        raise DataError(str(path), "no valid rows")
    written = _write_rejects(path, rejected, rejects_path) if rejected and write_rejects else None
    return LoadResult(_to_dataset(rows), preset, rejected, written)


def _write_rejects(path: Path, rejected: list[DataError], target: str | Path | None) -> Path:
    out = Path(target) if target else path.with_name(path.name + ".rejects.jsonl")
    lines = [
        json.dumps({"file": e.path, "line": e.line, "field": e.field, "error": e.reason}) for e in rejected
    ]
    atomic_write_text(out, "\n".join(lines) + "\n")
    return out


def _to_dataset(rows: list[dict[str, Any]]) -> datasets.Dataset:
    columns: dict[str, list[Any]] = {}
    for row in rows:
        for key in row:
            columns.setdefault(key, [])
    for key, values in columns.items():
        values.extend(row.get(key) for row in rows)
    return datasets.Dataset.from_dict(columns)


# ---------------------------------------------------------------- writing


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write text to `path` through a temp file and rename, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
    return path


def write_jsonl(rows: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Atomically write rows as JSONL (gzip when the name ends in .gz)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(tmp, "wt", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def save(dataset: datasets.Dataset, path: str | Path) -> Path:
    """Atomically save a dataset; the format follows the name: .jsonl[.gz], .parquet, else an HF dir."""
    path = Path(path)
    kind = _base_suffix(path)
    if kind == ".jsonl":
        return write_jsonl(dataset, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if kind == ".parquet":
        dataset.to_parquet(str(tmp))
        tmp.replace(path)
        return path
    if tmp.exists():
        shutil.rmtree(tmp)
    dataset.save_to_disk(str(tmp))
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
    return path
