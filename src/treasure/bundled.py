"""The real instruction data that ships inside the package, `treasure/data/` (see its SOURCES.md)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import datasets
import yaml

from treasure import io
from treasure.errors import DataError
from treasure.taxonomy import Taxonomy

DATA_DIR = Path(str(resources.files("treasure") / "data"))  # package data: found in any install


def manifest(groups: tuple[str, ...] = ("train",)) -> list[dict]:
    """Entries of `data/manifest.yaml` in `groups` (`train`: English; `multilingual`: 7 more languages)."""
    data = yaml.safe_load((DATA_DIR / "manifest.yaml").read_text(encoding="utf-8"))
    return [entry for group in groups for entry in data[group]]


def load_bundled(
    taxonomy: Taxonomy | None = None,
    limit_per_file: int | None = None,
    groups: tuple[str, ...] = ("train",),
) -> tuple[datasets.Dataset, list[DataError]]:
    """The bundled training files of `groups`, normalised, ids prefixed by the file stem (unique overall).

    The real data has a few unusable rows (e.g. an empty Alpaca output); they are skipped and returned.
    """
    parts = []
    rejected: list[DataError] = []
    for entry in manifest(groups):
        path = DATA_DIR / entry["file"]
        stem = Path(entry["file"]).name.split(".")[0]
        result = io.load(
            path,
            preset=entry["preset"],
            fields=entry.get("fields"),
            taxonomy=taxonomy,
            source=entry.get("source"),
            id_prefix=f"{stem}:",
            skip_invalid=True,
            write_rejects=False,
        )
        rejected.extend(result.rejected)
        part = result.dataset
        if limit_per_file is not None:
            part = part.select(range(min(limit_per_file, len(part))))
        parts.append(part.add_column("file", [entry["file"]] * len(part)))
    return datasets.concatenate_datasets(parts), rejected


def short_prompts(n: int, max_chars: int = 300) -> list[str]:
    """The first `n` distinct bundled training prompts shorter than `max_chars` (stripped), in file order:
    real requests for load and throughput benchmarks."""
    seen: dict[str, None] = {}
    for prompt in load_bundled()[0]["prompt"]:
        if len(prompt) < max_chars:
            seen.setdefault(prompt.strip(), None)
        if len(seen) == n:
            break
    return list(seen)
