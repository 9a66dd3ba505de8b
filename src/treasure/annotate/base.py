"""The one annotator interface: a step maps a batch (column → list) to marker columns.

Steps run in order inside one batch function; each sees the columns earlier steps produced (e.g. the
language step's output feeds the rules step's tokenizer). Shared intermediates that are not markers
(the sentence embedding) travel in the batch under names starting with `_` and are never written.
Given markers in the data always win: `merge_given` keeps a non-null input value over an annotated one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

Batch = dict[str, list[Any]]


class Step(Protocol):
    """An annotator family: `name`, `version`, the columns it `produces`, and the batch function."""

    name: str
    version: str
    produces: tuple[str, ...]

    def __call__(self, batch: Mapping[str, list[Any]]) -> Batch: ...


def merge_given(batch: Mapping[str, list[Any]], produced: Mapping[str, list[Any]]) -> Batch:
    """Produced columns, with every non-null value already in `batch` kept (given markers win)."""
    out: Batch = {}
    for name, values in produced.items():
        given = batch.get(name)
        if given is None:
            out[name] = list(values)
        else:
            out[name] = [g if g is not None else v for g, v in zip(given, values, strict=True)]
    return out


def batch_size(batch: Mapping[str, list[Any]]) -> int:
    """Number of rows in a batch."""
    return len(next(iter(batch.values()))) if batch else 0


def text_of(value: Any) -> str:
    """A cell as text ('' for None)."""
    return value if isinstance(value, str) else ""
