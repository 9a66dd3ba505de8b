"""Training sets from annotated rows: chat messages with the marker template, seeded dropout, baseline.

User turn = `template.with_prompt_markers(prompt, kept, tax)`; assistant turn = `template.render(all,
tax) + response` (docs/architecture.md §2). Each row draws its dropout from a `random.Random` seeded by
(seed, row id), so the output is byte-identical for a seed and does not depend on row order or parallelism.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import random
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, get_args

import datasets
import numpy as np

from treasure import io, row_formats, template
from treasure.artifacts import AnnotatedData, BuildReport, TrainDir
from treasure.errors import TreasureError
from treasure.knobs import knob
from treasure.taxonomy import Taxonomy
from treasure.tiny import MarkerTokens, TokenizerConfig, marker_token_strings, train_tokenizer

log = logging.getLogger(__name__)

# markers the reader itself sets (`io.load(source=...)`, a `source` column): values there do not show that
# the rows were annotated
LOADER_SET = frozenset({"source"})


@dataclass
class BuildConfig:
    """Dropout rates, marker choice, baseline switch, split and the tokenizer the overhead is measured with.

    `tokenizer` is `tiny` (train the tiny BPE tokenizer on the built text and measure each of
    `overhead_modes`), a local tokenizer/model dir, or None to skip the overhead report.
    """

    dataset_dropout: float = field(
        default=0.5, metadata=knob("Share of rows whose prompt gets no markers at all.")
    )
    marker_dropout: float = field(
        default=0.5, metadata=knob("Share of each remaining marker left out of the prompt.")
    )
    baseline: bool = field(default=False, metadata=knob("No markers anywhere (the ablation)."))
    markers: tuple[str, ...] | None = field(
        default=None, metadata=knob("Comma-separated marker names to use (default: all).")
    )
    seed: int = field(default=0, metadata=knob("Seed of the dropout and the split."))
    val_fraction: float = field(default=0.02, metadata=knob("Share of rows held out for validation."))
    tokenizer: str | None = field(
        default="tiny", metadata=knob("Tokenizer for the overhead report: tiny, a local model dir, or none.")
    )
    vocab_size: int = field(
        default=8000, metadata=knob("Vocabulary of the tiny tokenizer trained for the report.")
    )
    overhead_modes: tuple[MarkerTokens, ...] = field(
        default=("tags", "lines"),
        metadata=knob("Marker token styles the overhead report measures (none, tags, lines)."),
    )

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be between 0 and 1, got {getattr(self, name)}"
            for name in ("dataset_dropout", "marker_dropout", "val_fraction")
            if not 0.0 <= getattr(self, name) <= 1.0
        ]
        problems += [
            f"overhead_modes: unknown style {m!r} (valid: {', '.join(get_args(MarkerTokens))})"
            for m in self.overhead_modes
            if m not in get_args(MarkerTokens)
        ]
        if self.vocab_size < 256:
            problems.append(f"vocab_size must be at least 256, got {self.vocab_size}")
        if problems:
            raise TreasureError("invalid build options: " + "; ".join(problems))

    def check(self, tax: Taxonomy) -> None:
        """Raise `MarkerError` for marker names the taxonomy does not have."""
        for name in self.markers or ():
            tax[name]  # raises MarkerError listing the valid names


@dataclass
class BuildResult:
    """The built splits and the build report (what `build.json` holds)."""

    train: datasets.Dataset
    validation: datasets.Dataset
    report: dict[str, Any] = field(default_factory=dict)


def row_rng(seed: int, key: str, row_id: str) -> random.Random:
    """A generator for one row, independent of every other row (string seeds hash with sha512)."""
    return random.Random(f"{key}:{seed}:{row_id}")


def build_messages(
    row: Mapping[str, Any], tax: Taxonomy, names: Sequence[str], config: BuildConfig
) -> tuple[list[dict[str, str]], dict[str, int]]:
    """Chat messages for one row and its dropout counts (`rows_dropped`, `markers_seen`, `markers_kept`)."""
    markers = {n: row[n] for n in names if row.get(n) is not None}
    earlier = [
        {"role": m["role"], "content": template.escape(m["content"])} for m in row.get("messages") or []
    ]
    counts = {
        "rows_with_markers": int(bool(markers)),
        "rows_dropped": 0,
        "markers_seen": 0,
        "markers_kept": 0,
    }
    if config.baseline:
        user, assistant = template.escape(row["prompt"]), row["response"]
    else:
        rng = row_rng(config.seed, "dropout", str(row["id"]))
        dropped = rng.random() < config.dataset_dropout
        kept = {n: v for n, v in sorted(markers.items()) if rng.random() >= config.marker_dropout}
        if dropped:
            kept = {}
            counts["rows_dropped"] = int(bool(markers))
        else:
            counts["markers_seen"], counts["markers_kept"] = len(markers), len(kept)
        user = template.with_prompt_markers(row["prompt"], kept, tax)
        assistant = template.render(markers, tax) + row["response"]
    messages = [*earlier, {"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return messages, counts


def check_marked(ds: datasets.Dataset, names: Sequence[str], config: BuildConfig, path: str) -> None:
    """A marked build needs marker values: raise `TreasureError` when no marker (besides loader-set ones
    like `source`, unless asked for by name) has a value in any row; warn naming markers absent in every row.
    """
    if config.baseline:
        return
    valued = [n for n in names if n in ds.column_names and any(v is not None for v in ds[n])]
    informative = [n for n in valued if n not in LOADER_SET or config.markers]
    if not informative:
        asked = f" (asked for: {', '.join(names)})" if config.markers else ""
        raise TreasureError(
            f"{path}: has no marker values{asked}: run `treasure annotate` first "
            "(or build a baseline with `--baseline`)"
        )
    absent = [n for n in names if n not in valued and (n not in LOADER_SET or config.markers)]
    if absent:
        log.warning(
            "%s: marker(s) %s have no value in any row; the model will not learn them",
            path,
            ", ".join(absent),
        )


def build_rows(
    ds: datasets.Dataset, tax: Taxonomy, config: BuildConfig, path: str = "<dataset>"
) -> BuildResult:
    """Build train/validation splits from annotated rows; the report holds the realised dropout rates.

    A marked build of rows without marker values raises `TreasureError` (`check_marked`)."""
    config.check(tax)
    names = list(config.markers) if config.markers else [n for n in tax.names if n in ds.column_names]
    check_marked(ds, names, config, path)
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "validation": []}
    totals = {"rows_with_markers": 0, "rows_dropped": 0, "markers_seen": 0, "markers_kept": 0}
    for row in ds:
        messages, counts = build_messages(row, tax, names, config)
        for key, value in counts.items():
            totals[key] += value
        is_val = row_rng(config.seed, "split", str(row["id"])).random() < config.val_fraction
        entry = {"id": str(row["id"]), "messages": messages}
        carried = row_formats.INPUT_COLUMNS  # the input's other fields, carried through (every row)
        if carried in ds.column_names:
            entry[carried] = row[carried]
        splits["validation" if is_val else "train"].append(entry)
    report = {
        "config": _jsonable(asdict(config)),
        "markers": names,
        "n_rows": len(ds),
        "n_train": len(splits["train"]),
        "n_validation": len(splits["validation"]),
        "realised": None if config.baseline else realised_rates(totals),
        "counts": totals,
        "taxonomy_sha256": tax.content_hash(),
    }
    train, val = (datasets.Dataset.from_list(splits[k]) for k in ("train", "validation"))
    return BuildResult(train, val, report)


def realised_rates(totals: Mapping[str, int]) -> dict[str, float | None]:
    """Dataset-level rate = rows whose block was left out; sample-level = markers left out of the rest."""
    rows, seen = totals["rows_with_markers"], totals["markers_seen"]
    return {
        "dataset_dropout": round(totals["rows_dropped"] / rows, 4) if rows else None,
        "marker_dropout": round(1 - totals["markers_kept"] / seen, 4) if seen else None,
    }


def template_overhead(
    rows: Iterable[Mapping[str, Any]], tax: Taxonomy, config: BuildConfig
) -> dict[str, dict[str, float]]:
    """Median and p95 of template tokens / row tokens (chat-formatted) per tokenizer mode.

    Template tokens = tokens of the marked row minus tokens of the same row without any template.
    """
    if config.tokenizer is None or config.baseline:
        return {}
    marked, plain = [], []
    for row in rows:
        marked.append(row["messages"])
        plain.append(_strip_templates(row["messages"], tax))
    if not marked:
        return {}
    if config.tokenizer == "tiny":
        base = train_tokenizer(
            (m["content"] for msgs in marked for m in msgs),
            tax,
            TokenizerConfig(vocab_size=config.vocab_size, marker_tokens="none"),
        )
        tokenizers = {}
        for mode in config.overhead_modes:
            tok = copy.deepcopy(base)
            tok.add_tokens(marker_token_strings(tax, mode))
            tokenizers[f"tiny-{mode}"] = tok
    else:
        from transformers import AutoTokenizer

        tokenizers = {str(config.tokenizer): AutoTokenizer.from_pretrained(config.tokenizer)}
    out = {}
    for label, tok in tokenizers.items():
        full = _lengths(tok, marked)
        bare = _lengths(tok, plain)
        share = (full - bare) / full
        out[label] = {
            "median": round(float(np.median(share)), 4),
            "p95": round(float(np.percentile(share, 95)), 4),
            "mean_template_tokens": round(float(np.mean(full - bare)), 2),
            "mean_row_tokens": round(float(np.mean(full)), 2),
        }
    return out


def _lengths(tok: Any, conversations: list[list[dict[str, str]]]) -> np.ndarray:
    if tok.chat_template:
        texts = [tok.apply_chat_template(c, tokenize=False) for c in conversations]
    else:
        texts = ["\n".join(m["content"] for m in c) for c in conversations]
    ids = tok(texts, add_special_tokens=False)["input_ids"]
    return np.array([len(i) for i in ids], dtype=float)


def _strip_templates(messages: list[dict[str, str]], tax: Taxonomy) -> list[dict[str, str]]:
    out = [dict(m) for m in messages]
    user, assistant = out[-2], out[-1]
    user["content"] = template.parse_prompt(user["content"], tax).response
    assistant["content"] = template.parse(assistant["content"], tax).response
    return out


def build(
    input_path: str | Path, out_dir: str | Path, config: BuildConfig, overwrite: bool = False
) -> TrainDir:
    """Build TRAIN_DIR from annotated data: splits (HF dirs + JSONL), build.json, taxonomy, stats.

    An existing, non-empty TRAIN_DIR is replaced only with `overwrite`, once the new one is complete.
    """
    input_path, out = Path(input_path), Path(out_dir)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise TreasureError(f"{out}: already holds a training set; pass `overwrite` to replace it")
    annotated = AnnotatedData.load(input_path)
    ds, tax = annotated.rows(), annotated.taxonomy
    result = build_rows(ds, tax, config, str(input_path))
    report = result.report
    report["input"] = {"path": str(input_path), "sha256": dataset_hash(ds)}
    report["template_overhead"] = template_overhead(result.train, tax, config)
    # written into a hidden sibling and renamed into place: a failed build leaves an earlier TRAIN_DIR whole
    work = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        TrainDir(work, BuildReport(report), tax, annotated.stats).save(result.train, result.validation)
        io.replace_dir(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return TrainDir(out, BuildReport(report), tax, annotated.stats)


def dataset_hash(ds: datasets.Dataset) -> str:
    """sha256 over the rows as canonical JSON (stable across file formats)."""
    digest = hashlib.sha256()
    for row in ds:
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False, default=str).encode())
    return digest.hexdigest()


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
