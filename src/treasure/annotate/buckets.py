"""Markers that need the whole dataset: `length_bucket` (taxonomy or tertile thresholds) and
`quality_bucket` (quartiles of quality within each language, 1 = best). Given values win.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from treasure.taxonomy import Taxonomy, with_thresholds

LengthBuckets = Literal["taxonomy", "quantile"]


def quantile_thresholds(numbers: Sequence[float], parts: int) -> tuple[int, ...]:
    """`parts - 1` ascending integer cut points splitting `numbers` into equal-count parts."""
    clean = [n for n in numbers if n is not None]
    if not clean:
        return ()
    cuts = np.quantile(np.asarray(clean, dtype=np.float64), [i / parts for i in range(1, parts)])
    return tuple(round(float(c)) for c in cuts)


def effective_taxonomy(tax: Taxonomy, lengths: Sequence[Any], mode: LengthBuckets) -> Taxonomy:
    """The taxonomy with `length_bucket` thresholds set from the data when `mode` is 'quantile'."""
    if mode == "taxonomy" or "length_bucket" not in tax:
        return tax
    cuts = quantile_thresholds(lengths, len(tax["length_bucket"].values))
    return with_thresholds(tax, "length_bucket", cuts) if cuts else tax


def length_buckets(tax: Taxonomy, lengths: Sequence[Any], given: Sequence[Any] | None) -> list[str | None]:
    """`length_bucket` per row from `length_tokens` (given values kept)."""
    marker = tax["length_bucket"]
    given = given if given is not None else [None] * len(lengths)
    return [
        g if g is not None else (marker.bucket_of(n) if n is not None else None)
        for g, n in zip(given, lengths, strict=True)
    ]


def quality_buckets(
    tax: Taxonomy, quality: Sequence[Any], language: Sequence[Any], given: Sequence[Any] | None
) -> list[str | None]:
    """Quartile (taxonomy values, best first) of quality within each language; ties share the better one."""
    values = tax["quality_bucket"].values
    groups: dict[Any, list[float]] = defaultdict(list)
    for q, lang in zip(quality, language, strict=True):
        if q is not None and not (isinstance(q, float) and math.isnan(q)):
            groups[lang].append(q)
    ordered = {lang: np.sort(np.asarray(qs))[::-1] for lang, qs in groups.items()}
    out: list[str | None] = []
    given = given if given is not None else [None] * len(quality)
    for q, lang, g in zip(quality, language, given, strict=True):
        if g is not None:
            out.append(g)
            continue
        if q is None or lang not in ordered or (isinstance(q, float) and math.isnan(q)):
            out.append(None)
            continue
        scores = ordered[lang]
        better = int(np.searchsorted(-scores, -q, side="left"))  # rows with strictly higher quality
        out.append(values[min(len(values) - 1, better * len(values) // len(scores))])
    return out
