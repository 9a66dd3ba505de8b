"""`source` marker: one value for a whole input file, or mapped from a field of each row."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from treasure.annotate.base import Batch, batch_size
from treasure.annotate.columns import PRODUCES
from treasure.errors import MarkerError
from treasure.knobs import knob
from treasure.taxonomy import Taxonomy


@dataclass(frozen=True)
class SourceConfig:
    """`value` for every row, or `from_field` whose raw values are looked up in `mapping` (raw → taxonomy)."""

    value: str | None = field(
        default=None,
        metadata=knob("source marker for every row: Human, Translation, Synthetic, Others.", "--source"),
    )
    from_field: str | None = field(
        default=None, metadata=knob("Take source from this column.", "--source-field")
    )
    mapping: Mapping[str, str] = field(
        default_factory=dict, metadata=knob("RAW=VALUE for --source-field, repeatable.", "--source-map")
    )


class SourceAnnotator:
    """Step producing `source`; a field value missing from the mapping must itself be a valid source."""

    name = "source"
    version = "source-1"
    produces = PRODUCES["source"]

    def __init__(self, taxonomy: Taxonomy, config: SourceConfig):
        self.marker = taxonomy["source"]
        self.config = config
        self.value = self.marker.canonical(config.value) if config.value is not None else None
        self.mapping = {str(k): self.marker.canonical(v) for k, v in config.mapping.items()}

    def _map(self, raw: Any) -> str | None:
        if raw is None:
            return self.value
        key = str(raw)
        if key in self.mapping:
            return self.mapping[key]
        try:
            return str(self.marker.canonical(key))
        except MarkerError:
            return self.value

    def __call__(self, batch: Mapping[str, list[Any]]) -> Batch:
        n = batch_size(batch)
        if self.config.from_field is None:
            return {"source": [self.value] * n}
        if self.config.from_field not in batch:
            raise MarkerError(
                f"source field '{self.config.from_field}' is not a column; columns: {', '.join(batch)}"
            )
        return {"source": [self._map(v) for v in batch[self.config.from_field]]}
