"""Ray Data engine: the same `run_steps` batch function under `map_batches` on an actor pool.

Without a running Ray cluster a local one is started (`ray.init(num_cpus=..., include_dashboard=False)`);
with `RAY_ADDRESS` set, Ray joins that cluster instead. Row order is preserved, so the output equals the
local engine's on the same input.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Any

import datasets
import pyarrow as pa

from treasure.annotate.config import AnnotateConfig
from treasure.annotate.steps import output_features, run_steps


@dataclass(frozen=True)
class RayConfig:
    """Local Ray instance settings (ignored when joining a cluster through RAY_ADDRESS)."""

    num_cpus: int | None = None
    temp_dir: str | None = None


class _Worker:
    """Actor holding the loaded steps; called once per batch."""

    def __init__(self, config: AnnotateConfig, threads: int):
        self.config = config
        self.threads = threads

    def __call__(self, table: pa.Table) -> pa.Table:
        batch = table.to_pydict()
        batch.update(run_steps(batch, self.config, self.threads))
        return pa.Table.from_pydict(batch)


def ensure_ray(config: RayConfig | None = None) -> Any:
    """Start (or join) Ray once per process."""
    import ray

    if not ray.is_initialized():
        config = config or RayConfig()
        if os.environ.get("RAY_ADDRESS"):
            ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
        else:
            temp = config.temp_dir or tempfile.mkdtemp(prefix="treasure-ray-")
            ray.init(
                num_cpus=config.num_cpus or os.cpu_count(),
                include_dashboard=False,
                _temp_dir=temp,
                log_to_driver=False,
            )
    return ray


def run_ray(
    ds: datasets.Dataset, config: AnnotateConfig, ray_config: RayConfig | None = None
) -> datasets.Dataset:
    """Annotate `ds` with `config.num_proc` Ray actors; returns the rows in input order."""
    if len(ds) == 0:
        return datasets.Dataset.from_dict({}, features=output_features(ds, config))
    ray = ensure_ray(ray_config)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = config.progress
    features = output_features(ds, config)
    threads = max(1, (os.cpu_count() or 1) // config.num_proc)
    table = ds.data.table.combine_chunks()
    # Blocks are sliced here, not by `repartition`: a repartition task would wait for a CPU that the
    # actor pool already holds (a deadlock when the pool uses every CPU).
    size = max(1, min(config.shard_size, -(-len(ds) // config.num_proc)))
    data = ray.data.from_arrow([table.slice(start, size) for start in range(0, len(ds), size)])
    mapped = data.map_batches(
        _Worker,
        fn_constructor_kwargs={"config": config, "threads": threads},
        batch_size=config.batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=config.num_proc),
        num_cpus=threads,
    )
    tables = [ray.get(ref) for ref in mapped.to_arrow_refs()]
    result = pa.concat_tables([t for t in tables if t.num_rows], promote_options="permissive")
    return datasets.Dataset(result).cast(features)
