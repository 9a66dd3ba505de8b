"""Run annotator steps over a dataset: local engine (`datasets.map(batched=True, num_proc=N)` over shards
written as they finish, resumable) or Ray Data; then the whole-data buckets; then stats and files.
Which steps run, and in what order, comes from the registry (annotate/registry.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)

from treasure import io
from treasure.annotate.buckets import LengthBuckets, effective_taxonomy, length_buckets, quality_buckets
from treasure.annotate.config import AnnotateConfig
from treasure.annotate.stats import compute_stats
from treasure.annotate.steps import build_steps as build_steps  # re-exported (evaluate's reward judge)
from treasure.annotate.steps import cached_steps, output_features, run_steps, whole_data_markers
from treasure.artifacts import REJECTS, WORK, AnnotatedData, Stats, sidecar
from treasure.errors import DataError, TreasureError
from treasure.knobs import knob
from treasure.taxonomy import Taxonomy

# nulls in these mean "absent by design", not "could not label"
ABSENT_OK = {"code_type", "format"}
# one value for every row is what these are for (`--source` labels a whole file)
ONE_VALUE_OK = {"source"}

log = logging.getLogger(__name__)


@dataclass
class AnnotateResult:
    """The annotated rows, the effective taxonomy (with data-derived thresholds) and run metadata."""

    dataset: datasets.Dataset
    taxonomy: Taxonomy
    thresholds: dict[str, list[float]]
    versions: dict[str, dict[str, str]]
    timings_s: dict[str, float]
    unlabelled: dict[str, int]
    extra: dict[str, Any] = field(default_factory=dict)


def _map(ds: datasets.Dataset, config: AnnotateConfig, features: datasets.Features) -> datasets.Dataset:
    num_proc = config.num_proc if len(ds) >= 2 * config.num_proc and config.num_proc > 1 else None
    threads = max(1, (os.cpu_count() or 1) // config.num_proc) if num_proc else 0
    return ds.map(
        run_steps,
        batched=True,
        batch_size=config.batch_size,
        num_proc=num_proc,
        fn_kwargs={"config": config, "threads": threads},
        features=features,
        load_from_cache_file=False,
        keep_in_memory=True,
        new_fingerprint=f"annotate-{config.fingerprint()}-{ds._fingerprint}",
    )


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("annotate"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]} rows/s"),
        TimeRemainingColumn(),
        disable=not enabled,
    )


def input_fingerprint(ds: datasets.Dataset) -> str:
    """Content hash of a dataset (for checking that --resume continues the same input)."""
    digest = hashlib.sha256()
    for batch in ds.data.to_batches(max_chunksize=4096):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        digest.update(sink.getvalue().to_pybytes())
    return digest.hexdigest()[:16]


def run_local(
    ds: datasets.Dataset, config: AnnotateConfig, work_dir: Path | None = None, resume: bool = False
) -> datasets.Dataset:
    """Annotate shard by shard; with `work_dir` each shard is written as it finishes and `resume` skips
    finished shards (a manifest checks that the input and config are the same)."""
    cached_steps(config)  # load models in the parent: forked workers inherit them
    features = output_features(ds, config)
    starts = list(range(0, len(ds), config.shard_size))
    if work_dir is not None:
        _prepare_work_dir(work_dir, ds, config, resume)
    tables: list[pa.Table] = []
    done_rows, began = 0, time.perf_counter()
    bars_were_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    with _progress(config.progress) as progress:
        task = progress.add_task("annotate", total=len(ds), rate="-")
        for index, start in enumerate(starts):
            path = work_dir / f"shard-{index:05d}.parquet" if work_dir is not None else None
            if path is not None and path.exists():
                table = pq.read_table(path)
            else:
                shard = ds.select(range(start, min(start + config.shard_size, len(ds))))
                table = _map(shard, config, features).data.table
                if path is not None:
                    tmp = path.with_name(f".{path.name}.tmp")
                    pq.write_table(table, tmp)
                    os.replace(tmp, path)
            tables.append(table)
            done_rows += table.num_rows
            rate = done_rows / max(time.perf_counter() - began, 1e-9)
            progress.update(task, completed=done_rows, rate=f"{rate:,.0f}")
    if bars_were_on:  # a quiet CLI keeps them off
        datasets.enable_progress_bars()
    if not tables:
        return ds
    return datasets.Dataset(pa.concat_tables([t.cast(tables[0].schema) for t in tables]))


def _prepare_work_dir(work_dir: Path, ds: datasets.Dataset, config: AnnotateConfig, resume: bool) -> None:
    manifest = {
        "input": input_fingerprint(ds),
        "config": config.fingerprint(),
        "shard_size": config.shard_size,
        "rows": len(ds),
    }
    path = work_dir / "manifest.json"
    if resume and path.exists():
        found = json.loads(path.read_text(encoding="utf-8"))
        if found != manifest:
            changed = [k for k in manifest if found.get(k) != manifest[k]]
            raise TreasureError(
                f"{work_dir}: cannot resume: {', '.join(changed)} changed since the first run"
            )
        return
    if work_dir.exists():
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True)
    io.atomic_write_text(path, json.dumps(manifest, sort_keys=True))


def finalize(
    ds: datasets.Dataset, config: AnnotateConfig
) -> tuple[datasets.Dataset, Taxonomy, dict[str, list[float]]]:
    """Whole-data markers: length_bucket (taxonomy or tertile thresholds) and quality_bucket."""
    tax = config.taxonomy
    thresholds: dict[str, list[float]] = {}
    made = whole_data_markers(config)
    if not made or "length_tokens" not in ds.column_names:
        return ds, tax, thresholds
    lengths = ds["length_tokens"]
    tax = effective_taxonomy(tax, lengths, config.length_buckets)
    if "length_bucket" in tax and "length_bucket" in made:
        thresholds["length_bucket"] = list(tax["length_bucket"].thresholds)
        given = ds["length_bucket"] if "length_bucket" in ds.column_names else None
        ds = _set_column(ds, "length_bucket", length_buckets(tax, lengths, given))
    if "quality_bucket" in tax and "quality_bucket" in made and "quality" in ds.column_names:
        language = ds["language"] if "language" in ds.column_names else [None] * len(ds)
        given = ds["quality_bucket"] if "quality_bucket" in ds.column_names else None
        ds = _set_column(ds, "quality_bucket", quality_buckets(tax, ds["quality"], language, given))
    return ds, tax, thresholds


def single_values(ds: datasets.Dataset, tax: Taxonomy) -> dict[str, Any]:
    """Categorical/ordinal markers whose every row holds the same value (marker → that value)."""
    out: dict[str, Any] = {}
    if len(ds) < 2:
        return out
    for name, marker in tax.markers.items():
        if (
            name in ONE_VALUE_OK
            or marker.kind not in ("categorical", "ordinal")
            or name not in ds.column_names
        ):
            continue
        values = set(ds[name])
        if len(values) == 1 and None not in values:
            out[name] = values.pop()
    return out


def warn_single_values(
    ds: datasets.Dataset, tax: Taxonomy, length_mode: LengthBuckets = "quantile"
) -> dict[str, Any]:
    """Log one warning per marker that ended with one value over all rows (the model learns nothing from it),
    with the fix; returns those markers and values."""
    found = single_values(ds, tax)
    for name, value in found.items():
        if name == "length_bucket" and length_mode == "taxonomy":
            fix = "drop `--length-buckets taxonomy` (thresholds from the data's tertiles) or set thresholds"
        elif name == "length_bucket":
            fix = "the answers' lengths barely differ: add answers of other lengths"
        else:
            fix = "add rows with other values, or leave it out of the build (`treasure build --markers ...`)"
        log.warning(
            "marker %s is %r in all %d rows, so the model cannot learn it: %s", name, value, len(ds), fix
        )
    return found


def _set_column(ds: datasets.Dataset, name: str, values: Sequence[Any]) -> datasets.Dataset:
    column = pa.array(values, type=pa.string())
    table = ds.data.table
    if name in table.column_names:
        table = table.set_column(table.column_names.index(name), name, column)
    else:
        table = table.append_column(name, column)
    return datasets.Dataset(table)


def check_rows(ds: datasets.Dataset, path: str = "<dataset>") -> tuple[datasets.Dataset, list[DataError]]:
    """Drop rows whose prompt/response is missing or not text; each becomes a DataError with its row (as
    read, carried input fields back at the top, nulls left out) in `raw`."""
    for needed in ("prompt", "response"):
        if needed not in ds.column_names:
            raise DataError(path, f"no '{needed}' column; columns: {', '.join(ds.column_names)}")
    bad: list[DataError] = []
    keep: list[int] = []
    ids = ds["id"] if "id" in ds.column_names else [None] * len(ds)
    for i, (p, r) in enumerate(zip(ds["prompt"], ds["response"], strict=True)):
        problem = next(
            (f for f, v in (("prompt", p), ("response", r)) if not isinstance(v, str) or not v.strip()), None
        )
        if problem is None:
            keep.append(i)
        else:
            row = {k: v for k, v in io.with_input_columns(ds[i]).items() if v is not None}
            message = f"missing or not text (id {ids[i]})"
            bad.append(DataError(path, message, i + 1, problem, unit="row", raw=row))
    return (ds if not bad else ds.select(keep)), bad


def annotate(
    ds: datasets.Dataset, config: AnnotateConfig, work_dir: Path | None = None, resume: bool = False
) -> AnnotateResult:
    """Annotate `ds` with the configured engine; rows must have text `prompt` and `response`."""
    began = time.perf_counter()
    if config.engine == "ray":
        from treasure.annotate.ray_engine import run_ray

        out = run_ray(ds, config)
    else:
        out = run_local(ds, config, work_dir, resume)
    mapped = time.perf_counter()
    out, tax, thresholds = finalize(out, config)
    warn_single_values(out, tax, config.length_buckets)
    steps = cached_steps(config)
    produced = [c for s in steps for c in s.produces if not c.startswith("_")]
    unlabelled = {
        c: sum(v is None for v in out[c]) for c in produced if c not in ABSENT_OK and c in out.column_names
    }
    timings = {"annotate": mapped - began, "buckets": time.perf_counter() - mapped}
    extra = {}
    for step in steps:
        if hasattr(step, "counters"):
            extra[step.name] = step.counters()
    versions = {s.name: {"version": s.version} for s in steps}
    return AnnotateResult(out, tax, thresholds, versions, timings, unlabelled, extra)


def annotate_dataset(ds: datasets.Dataset, config: AnnotateConfig | None = None) -> datasets.Dataset:
    """Annotated copy of `ds` (one column per marker; given markers kept)."""
    return annotate(ds, config or AnnotateConfig()).dataset


def annotate_texts(
    prompts: Sequence[str],
    responses: Sequence[str],
    annotators: Sequence[str] = ("language", "rules"),
    taxonomy: Taxonomy | None = None,
) -> list[dict[str, Any]]:
    """Markers per (prompt, response), absent ones left out. `length_bucket` uses the taxonomy's
    thresholds; `quality_bucket` needs a population and is not produced here."""
    config = AnnotateConfig(annotators=tuple(annotators), taxonomy=taxonomy or Taxonomy.default())
    batch = {"prompt": list(prompts), "response": list(responses)}
    columns = run_steps(batch, config) if prompts else {}
    tax = config.taxonomy
    if "length_tokens" in columns and "length_bucket" in tax:
        columns["length_bucket"] = length_buckets(tax, columns["length_tokens"], None)
    columns.pop("quality_bucket", None)
    return [{k: v[i] for k, v in columns.items() if v[i] is not None} for i in range(len(prompts))]


@dataclass(frozen=True)
class AnnotateFileConfig:
    """File-level options: input preset and field mapping, resume, and the annotate config."""

    preset: str | None = field(
        default=None, metadata=knob("Input preset (alpaca, fastchat, messages, ...); default: detect.")
    )
    fields: Mapping[str, str] = field(
        default_factory=dict, metadata=knob("NAME=INPUT_FIELD mapping, repeatable.", "--field")
    )
    resume: bool = field(default=False, metadata=knob("Skip shards a killed run already finished."))
    keep_work_dir: bool = field(
        default=False, metadata=knob("Keep OUTPUT.work/ (finished shards) after the run.", "--keep-work")
    )
    max_reject_rate: float = field(
        default=0.01,
        metadata=knob("Fail (keeping any old OUTPUT) when more than this share of input rows is rejected."),
    )
    overwrite: bool = field(
        default=False, metadata=knob("Replace an existing OUTPUT (kept until the new one is written).")
    )
    annotate: AnnotateConfig = field(default_factory=AnnotateConfig)

    def __post_init__(self) -> None:
        if not 0 <= self.max_reject_rate <= 1:
            raise TreasureError(f"max_reject_rate must be in [0, 1], got {self.max_reject_rate!r}")


def annotate_file(input_path: Path, output: Path, config: AnnotateFileConfig) -> AnnotatedData:
    """Read, annotate and write OUTPUT, OUTPUT.stats.json, OUTPUT.taxonomy.yaml (+ OUTPUT.rejects.jsonl)."""
    began = time.perf_counter()
    if output.exists() and not (config.overwrite or config.resume):
        raise TreasureError(
            f"{output}: exists; set `overwrite` to replace it (kept until the new one is written)"
        )
    rejects = sidecar(output, REJECTS)
    loaded = io.load(
        input_path,
        preset=config.preset,
        fields=config.fields,
        taxonomy=config.annotate.taxonomy,
        skip_invalid=True,
        rejects_path=rejects,
    )
    ds, bad = check_rows(loaded.dataset, str(input_path))
    rejected = list(loaded.rejected) + bad
    if bad:  # appended to what io.load wrote, in the same shape
        earlier = rejects.read_text(encoding="utf-8") if loaded.rejected and rejects.exists() else ""
        extra = [
            {"file": e.path, "line": e.line, "field": e.field, "error": e.reason, "record": e.raw}
            for e in bad
        ]
        io.atomic_write_text(
            rejects, earlier + "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in extra)
        )
    elif not rejected and rejects.exists():
        rejects.unlink()
    share = len(rejected) / (len(rejected) + len(ds)) if rejected else 0.0
    if share > config.max_reject_rate:
        raise DataError(
            str(input_path),
            f"{len(rejected)} of {len(rejected) + len(ds)} rows rejected ({share:.1%} > max_reject_rate "
            f"{config.max_reject_rate:.1%}); see {rejects}; {output} was not written "
            f"(first: {rejected[0]})",
        )
    loaded_at = time.perf_counter()
    work_dir = sidecar(output, WORK)
    result = annotate(
        ds,
        config.annotate,
        work_dir=work_dir if config.annotate.engine == "local" else None,
        resume=config.resume,
    )
    io.save(result.dataset, output)
    timings = {"load": loaded_at - began, **result.timings_s, "total": time.perf_counter() - began}
    stats = compute_stats(
        result.dataset,
        result.taxonomy,
        config.annotate.stats,
        thresholds=result.thresholds,
        annotators=result.versions,
        timings_s=timings,
        unlabelled=result.unlabelled,
        rejected=len(rejected),
        extra={"engine": config.annotate.engine, "num_proc": config.annotate.num_proc, **result.extra},
    )
    annotated = AnnotatedData(output, result.taxonomy, Stats(stats)).save()
    if not config.keep_work_dir and work_dir.exists():
        shutil.rmtree(work_dir)
    return annotated


def with_annotators(config: AnnotateConfig, annotators: Sequence[str]) -> AnnotateConfig:
    """A copy of `config` running `annotators`."""
    return replace(config, annotators=tuple(annotators))
