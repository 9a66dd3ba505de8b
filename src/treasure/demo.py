"""`make demo`: the whole loop on the embedded default (bundled real data, a tiny model on the CPU).

Stages write under `runs/demo/` and are cached: a second run reuses finished stages.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from treasure.bundled import load_bundled


@dataclass
class DemoConfig:
    """Where the demo writes and how much of the bundled data it uses."""

    out_dir: Path = Path("runs/demo")
    seed: int = 0


def data_summary(console: Console) -> None:
    """Print rows per source and file, and field coverage, of the bundled training data."""
    ds, rejected = load_bundled()
    by_file = Counter(zip(ds["file"], ds["source"], strict=True))
    table = Table(title=f"bundled training data: {len(ds)} rows")
    table.add_column("file")
    table.add_column("source")
    table.add_column("rows", justify="right")
    for (file, source), count in sorted(by_file.items()):
        table.add_row(file, source, str(count))
    console.print(table)
    coverage = Table(title="field coverage")
    coverage.add_column("field")
    coverage.add_column("rows with a value", justify="right")
    coverage.add_column("share", justify="right")
    for name in ds.column_names:
        filled = sum(v is not None and v != "" for v in ds[name])
        coverage.add_row(name, str(filled), f"{filled / len(ds):.0%}")
    console.print(coverage)
    for error in rejected:
        console.print(f"[yellow]skipped[/] {error}")


def run_demo(config: DemoConfig, console: Console) -> None:
    """Run every demo stage in order."""
    config.out_dir.mkdir(parents=True, exist_ok=True)
    data_summary(console)
