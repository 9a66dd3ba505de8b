"""`evaluate(config)`: run the suites, write `metrics.json` and `report.html`, return the metrics."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any

from treasure.artifacts import METRICS
from treasure.errors import MarkerError, TreasureError
from treasure.evaluate.config import EvalConfig
from treasure.evaluate.context import EvalContext
from treasure.evaluate.report import write_report
from treasure.evaluate.suite import section_key
from treasure.evaluate.suites import resolve
from treasure.generate import ModelMarkers
from treasure.io import atomic_write_text


def _jsonable(config: EvalConfig) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(config), default=str))


def check_adherence_markers(config: EvalConfig) -> None:
    """Raise `MarkerError` for an adherence marker or value the model dir's taxonomy does not allow or the
    model was not trained with, from its small files, before any weights load (`ModelMarkers`)."""
    known = ModelMarkers.of(config.model_dir)
    for marker, values in config.adherence_markers.items():
        for value in values:
            try:
                known.check({marker: value}, "controlling")
            except MarkerError as exc:
                raise MarkerError(f"adherence_markers: {exc}") from None


def evaluate(config: EvalConfig) -> dict[str, Any]:
    """Run `config.suites` in order on the marked model (and baseline); write metrics.json + report.html."""
    suites = resolve(config)
    for path in (config.model_dir, config.baseline_dir):
        if path is not None and not path.is_dir():
            raise TreasureError(f"{path}: model dir not found")
    if any(suite.name == "adherence" for suite in suites):
        check_adherence_markers(config)
    out = config.out_dir
    out.mkdir(parents=True, exist_ok=True)
    ctx = EvalContext(config)
    sections = {section_key(suite.name): suite.run(ctx) for suite in suites}
    fingerprints = ctx.runs.fingerprints
    metrics = {
        "treasure_version": version("treasure"),
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "config": _jsonable(config),
        "models": {
            name: {"path": str(path), "hash": fingerprints[name]} for name, path in ctx.models.items()
        },
        "judge": ctx.judge.name if any(suite.needs_judge for suite in suites) else None,
        "suites": sections,
        "timings_s": {k: round(v, 1) for k, v in ctx.timings.items()},
    }
    atomic_write_text(out / METRICS, json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    write_report(metrics, out)
    return metrics
