"""Prompt files of `treasure generate` and `evaluate`: JSONL rows read and checked (errors name the file, line
and field), and the row written back per answer."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from treasure.errors import DataError, MarkerError
from treasure.io import iter_records
from treasure.taxonomy import Taxonomy

if TYPE_CHECKING:
    from treasure.generate import Generation


def read_prompts(path: str | Path, taxonomy: Taxonomy | None = None) -> list[dict[str, Any]]:
    """Read a prompts JSONL file (rows with `prompt` and optional `id`, `markers`); errors name the line.

    With a `taxonomy`, each row's markers are checked against it too (a bad one names file, line, field).
    """
    rows = []
    for line, record in iter_records(path):
        if isinstance(record, DataError):
            raise record
        if not isinstance(record, dict):
            raise DataError(str(path), "expected a JSON object", line)
        prompt = record.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise DataError(str(path), "missing or empty string", line, "prompt")
        markers = record.get("markers")
        if markers is not None and not isinstance(markers, dict):
            raise DataError(str(path), "must be an object of marker name → value", line, "markers")
        if markers and taxonomy is not None:
            try:
                taxonomy.user_markers(markers)
            except MarkerError as exc:
                raise DataError(str(path), str(exc), line, "markers") from None
        rows.append({"id": str(record.get("id", line)), "prompt": prompt, "markers": markers})
    return rows


def output_row(row_id: str, generation: Generation) -> dict[str, Any]:
    """The JSON line written for one prompt by `treasure generate`."""
    return {
        "id": row_id,
        "prompt": generation.prompt,
        "response": generation.response,
        "markers": generation.markers,
        "markers_error": generation.markers_error,
    }
