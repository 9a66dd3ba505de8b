"""`evaluate(config)`: run the suites, write `metrics.json` and `report.html`, return the metrics."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any

from treasure.errors import TreasureError
from treasure.evaluate.config import EvalConfig
from treasure.evaluate.context import EvalContext
from treasure.evaluate.report import write_report
from treasure.evaluate.suite import section_key
from treasure.evaluate.suites import resolve
from treasure.io import atomic_write_text


def _jsonable(config: EvalConfig) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(config), default=str))


def evaluate(config: EvalConfig) -> dict[str, Any]:
    """Run `config.suites` in order on the marked model (and baseline); write metrics.json + report.html."""
    suites = resolve(config)
    for path in (config.model_dir, config.baseline_dir):
        if path is not None and not path.is_dir():
            raise TreasureError(f"{path}: model dir not found")
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
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    write_report(metrics, out)
    return metrics
