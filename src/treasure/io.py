"""Read and write datasets; normalise rows to one schema through presets and field mappings.

Row schema: `id`, `prompt`, `response`, `source`, optional `messages` (earlier chat turns) and any
given markers (columns named exactly as a taxonomy marker). Readers take JSONL (optionally .gz), JSON
arrays, CSV, Parquet and `datasets.save_to_disk` directories. Errors name the file, line and field.
Writes are atomic (temp file + rename).
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import os
import shutil
import threading
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import datasets

from treasure.errors import DataError
from treasure.row_formats import INPUT_COLUMNS, PRESETS, RowError, check_options, detect_preset, normalise
from treasure.taxonomy import Taxonomy

MAX_ROW_BYTES = 1_000_000
REJECT_RAW_CHARS = (
    10_000  # a rejected row over the size limit keeps this much of its text in the rejects file
)


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


def _unit(path: Path) -> str:
    """How records of `path` are numbered in errors: 'line' (JSONL, CSV), 'item' (JSON), else 'row'."""
    kind = _base_suffix(path) if path.is_file() else ""
    return {".jsonl": "line", ".ndjson": "line", ".csv": "line", ".json": "item"}.get(kind, "row")


def iter_records(path: str | Path, max_row_bytes: int = MAX_ROW_BYTES) -> Iterator[tuple[int, Any]]:
    """Yield (line, item or row number, record) from a data file or HF dataset dir.

    A malformed record is yielded as a `DataError` in place of the record so callers can skip it
    and go on; a file that cannot be read at all raises `DataError`.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(str(path), "file not found")
    if path.is_dir():
        records = _iter_hf_dir(path)
    else:
        kind = _base_suffix(path)
        readers = {
            ".jsonl": partial(_iter_jsonl, max_row_bytes=max_row_bytes),
            ".ndjson": partial(_iter_jsonl, max_row_bytes=max_row_bytes),
            ".json": _iter_json_array,
            ".csv": _iter_csv,
            ".parquet": _iter_parquet,
        }
        if kind not in readers:
            raise DataError(
                str(path), "unknown format; use .jsonl, .json, .csv, .parquet (optionally .gz) or an HF dir"
            )
        records = readers[kind](path)
    unit = _unit(path)
    sized = unit != "line" or _base_suffix(path) == ".csv"  # JSONL lines are measured raw, before parsing
    try:
        for number, record in records:
            if sized and not isinstance(record, DataError):
                size = _size(record)
                if size > max_row_bytes:
                    record = DataError(
                        str(path),
                        f"row is {size} bytes, over the limit of {max_row_bytes}",
                        number,
                        unit=unit,
                        raw=_clip(json.dumps(record, ensure_ascii=False, default=str)),
                    )
            yield number, record
    except (OSError, EOFError, zlib.error) as exc:  # truncated or corrupt .gz, unreadable file
        raise DataError(str(path), f"cannot read file: {exc}") from None


def read_records(path: str | Path) -> list[Any]:
    """Every record of a data file (`iter_records`: JSONL, JSON, CSV, Parquet, optionally .gz, or an HF
    dir); the first malformed one raises its `DataError` (file, line, field). For files treasure ships
    or wrote itself, where a bad line is a bug, not user data to skip."""
    records = []
    for _, record in iter_records(path):
        if isinstance(record, DataError):
            raise record
        records.append(record)
    return records


def _clip(text: str) -> str:
    """`text`, cut to `REJECT_RAW_CHARS` (with a note) for the rejects file."""
    if len(text) <= REJECT_RAW_CHARS:
        return text
    return text[:REJECT_RAW_CHARS] + "... [cut]"


def _size(record: Any) -> int:
    return len(json.dumps(record, ensure_ascii=False, default=str).encode())


def _iter_jsonl(path: Path, max_row_bytes: int = MAX_ROW_BYTES) -> Iterator[tuple[int, Any]]:
    seen = False
    with _open_text(path) as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            if not raw.strip():
                continue
            seen = True
            if len(raw) > max_row_bytes:
                message = f"row is {len(raw)} bytes, over the limit of {max_row_bytes}"
                text = _clip(raw[: REJECT_RAW_CHARS * 4].decode("utf-8", errors="replace").rstrip("\r\n"))
                yield number, DataError(str(path), message, number, raw=text)
                continue
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                message = f"invalid UTF-8 at byte {exc.start} of the line"
                text = raw.decode("utf-8", errors="replace").rstrip("\r\n")  # undecodable bytes as U+FFFD
                yield number, DataError(str(path), message, number, raw=text)
                continue
            try:
                yield number, json.loads(text)
            except json.JSONDecodeError as exc:
                message = f"invalid JSON: {exc.msg} (column {exc.colno})"
                yield number, DataError(str(path), message, number, raw=text)
    if not seen:
        raise DataError(str(path), "empty file: no rows")


def _decode(path: Path, blob: bytes) -> str:
    try:
        return blob.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = blob[: exc.start].count(b"\n") + 1
        raise DataError(str(path), f"invalid UTF-8 at byte {exc.start} of the file", line) from None


def _iter_json_array(path: Path) -> Iterator[tuple[int, Any]]:
    with _open_text(path) as handle:
        text = _decode(path, handle.read())
    if not text.strip():
        raise DataError(str(path), "empty file: no rows")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(str(path), f"invalid JSON: {exc.msg} (column {exc.colno})", exc.lineno) from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not data:
        raise DataError(str(path), "expected a non-empty JSON array of objects")
    yield from enumerate(data, start=1)


def _iter_csv(path: Path) -> Iterator[tuple[int, Any]]:
    with _open_text(path) as handle:
        text = _decode(path, handle.read())
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))  # size is checked per row instead
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    start, seen = 1, False
    try:
        for cells in reader:
            line, start = start, reader.line_num + 1
            if header is None:
                header = cells
                if len(set(header)) != len(header) or not all(header):
                    yield line, DataError(str(path), "header has empty or repeated column names", line)
                    return
                continue
            if not any(cells):
                continue
            seen = True
            if len(cells) != len(header):
                message = f"has {len(cells)} fields, the header has {len(header)}"
                yield line, DataError(str(path), message, line, raw=cells)
                continue
            yield line, dict(zip(header, cells, strict=True))
    except csv.Error as exc:
        raise DataError(str(path), f"not valid CSV: {exc}", start) from None
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
    (default: `<path>.rejects.jsonl`), one JSON object per rejected row with its file, line, field,
    error and raw record (the record as read, or the line's text when it could not be parsed: invalid
    JSON or UTF-8, a row over the size limit cut to `REJECT_RAW_CHARS`). A file with no valid row at all
    raises `DataError`.
    """
    path = Path(path)
    tax = taxonomy or Taxonomy.default()
    check_options(preset, fields, tax)
    if source is not None:
        tax.canonical("source", source)
    unit = _unit(path)
    rows: list[dict[str, Any]] = []
    rejected: list[DataError] = []
    raw_rejects: list[Any] = []
    for number, record in iter_records(path, max_row_bytes):
        try:
            if isinstance(record, DataError):
                raise record
            if preset is None:
                preset = _detect(path, number, record, fields, unit)
            row = normalise(record, preset, fields, tax, source)
        except DataError as exc:  # unreadable (its line text) or no preset detected (the record)
            error, raw = exc, exc.raw if isinstance(record, DataError) else record
        except RowError as exc:
            error, raw = DataError(str(path), str(exc), number, exc.field, unit=unit), record
        else:
            row["id"] = id_prefix + row["id"]
            rows.append(row)
            continue
        if not skip_invalid:
            raise error
        rejected.append(error)
        raw_rejects.append(raw)
    written = (
        _write_rejects(path, rejected, raw_rejects, rejects_path) if rejected and write_rejects else None
    )
    if not rows:
        where = f"; rejects in {written}" if written else ""
        raise DataError(str(path), f"no valid rows ({len(rejected)} rejected{where}); first: {rejected[0]}")
    return LoadResult(_to_dataset(rows), str(preset), rejected, written)


def _detect(path: Path, number: int, record: Any, fields: Mapping[str, str] | None, unit: str) -> str:
    keys = set(record) | set(fields or {}) if isinstance(record, Mapping) else set()
    preset = detect_preset(dict.fromkeys(keys))
    if preset is None:
        shown = sorted(map(str, keys)) if isinstance(record, Mapping) else type(record).__name__
        raise DataError(
            str(path),
            f"cannot detect a preset from fields {shown}; pass --preset ({', '.join(PRESETS)}) or --field",
            number,
            unit=unit,
        )
    return preset


def _write_rejects(path: Path, rejected: list[DataError], raws: list[Any], target: str | Path | None) -> Path:
    out = Path(target) if target else path.with_name(path.name + ".rejects.jsonl")
    lines = [
        json.dumps(
            {"file": e.path, "line": e.line, "field": e.field, "error": e.reason, "record": raw},
            ensure_ascii=False,
            default=str,
        )
        for e, raw in zip(rejected, raws, strict=True)
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


def _temp_path(path: Path) -> Path:
    """A temp file beside `path`, its own per process and thread (threads may write the same path)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")


def _empty_dataset(path: Path) -> datasets.Dataset | None:
    """A saved dataset of no rows (e.g. a small set's validation split): `datasets` writes no .arrow file for
    it and cannot load it back, so it is rebuilt from its saved features; None for any other dir."""
    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or state.get("_data_files") != []:
        return None
    features = datasets.DatasetInfo.from_directory(str(path)).features
    return datasets.Dataset.from_dict({name: [] for name in features or {}}, features=features)


def load_from_disk(path: str | Path) -> Any:
    """`datasets.load_from_disk`, with a missing or damaged dir reported as one line naming it."""
    try:
        empty = _empty_dataset(Path(path))
        return empty if empty is not None else datasets.load_from_disk(str(path))
    except (FileNotFoundError, OSError, ValueError) as exc:
        raise DataError(str(path), f"not a readable dataset dir ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # pyarrow raises its own errors for damaged .arrow files
        if type(exc).__module__.startswith("pyarrow"):
            raise DataError(str(path), f"damaged dataset files ({exc})") from None
        raise


def replace_dir(src: Path, dst: Path) -> Path:
    """Put the finished dir `src` at `dst`, replacing what was there (kept aside until `src` is in place)."""
    old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
    if dst.exists():
        os.replace(dst, old)
    os.replace(src, dst)
    if old.exists():
        shutil.rmtree(old)
    return dst


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write text to `path` through a temp file and rename, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def with_input_columns(row: Mapping[str, Any]) -> Mapping[str, Any]:
    """The row with its carried input fields (`INPUT_COLUMNS`) back as top-level fields."""
    if INPUT_COLUMNS not in row:
        return row
    out = {k: v for k, v in row.items() if k != INPUT_COLUMNS}
    for key, value in json.loads(row[INPUT_COLUMNS] or "{}").items():
        out.setdefault(key, value)
    return out


def write_jsonl(rows: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Atomically write rows as JSONL (gzip when the name ends in .gz)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(tmp, "wt", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(with_input_columns(row), ensure_ascii=False, sort_keys=True) + "\n")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save(dataset: datasets.Dataset, path: str | Path) -> Path:
    """Atomically save a dataset: `.jsonl`, `.jsonl.gz`, `.parquet`, or an HF dir (a name without suffix)."""
    path = Path(path)
    kind = _base_suffix(path)
    if kind in (".jsonl", ".ndjson"):
        return write_jsonl(dataset, path)
    if (
        kind in (".json", ".csv")
        or path.suffix == ".gz"
        or (kind == ".parquet") != (path.suffix == ".parquet")
    ):
        raise DataError(str(path), "save writes .jsonl, .jsonl.gz, .parquet or a directory (no suffix)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    if kind == ".parquet":
        try:
            dataset.to_parquet(str(tmp))
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
        return path
    shutil.rmtree(tmp, ignore_errors=True)
    dataset.save_to_disk(str(tmp))
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
    return path
