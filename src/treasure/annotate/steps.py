"""The batch function both engines run: the planned steps in order over one batch, and the typed output
columns. Imports no engine code (pipeline → ray_engine → steps is one-way)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import datasets

from treasure.annotate.base import Batch, Step, merge_given
from treasure.annotate.config import AnnotateConfig
from treasure.annotate.registry import REGISTRY

KIND_TYPES = {"categorical": "string", "ordinal": "string", "integer": "int64", "float": "float64"}


def build_steps(config: AnnotateConfig) -> list[Step]:
    """The steps of the planned annotators, in the order they run."""
    steps = [a.build(config) for a in REGISTRY.plan(config)]
    return [s for s in steps if s is not None]


def whole_data_markers(config: AnnotateConfig) -> set[str]:
    """Markers the planned annotators make from the whole data after every batch (the buckets)."""
    return {m for a in REGISTRY.plan(config) for m in a.whole_data}


_STEPS: dict[str, list[Step]] = {}


def cached_steps(config: AnnotateConfig) -> list[Step]:
    """Steps for `config`, built once per process (workers reuse loaded models across batches)."""
    key = config.fingerprint()
    if key not in _STEPS:
        _STEPS[key] = build_steps(config)
    return _STEPS[key]


def marker_columns(config: AnnotateConfig) -> list[str]:
    """Marker columns the steps write (in taxonomy order), plus the whole-data ones."""
    produced = {c for s in cached_steps(config) for c in s.produces if not c.startswith("_")}
    produced |= whole_data_markers(config)
    return [n for n in config.taxonomy.names if n in produced]


def run_steps(batch: Mapping[str, list[Any]], config: AnnotateConfig, threads: int = 0) -> Batch:
    """Annotate one batch: every step in order, given values winning; returns the marker columns."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    context: dict[str, list[Any]] = dict(batch)
    for step in cached_steps(config):
        context.update(merge_given(context, step(context)))
    return {name: context[name] for name in marker_columns(config) if name in context}


def output_features(ds: datasets.Dataset, config: AnnotateConfig) -> datasets.Features:
    """Input features plus one typed column per batch-produced marker (so shards always concatenate)."""
    feats = datasets.Features(dict(ds.features))
    whole = whole_data_markers(config)
    for name in marker_columns(config):
        if name not in whole:
            feats[name] = datasets.Value(KIND_TYPES[config.taxonomy[name].kind])
    return feats
