"""Ray Data engine: the same `run_steps` batch function under `map_batches`, as Ray tasks.

Without a running Ray cluster a local one is started (`ray.init(num_cpus=..., include_dashboard=False)`);
with `RAY_ADDRESS` set, Ray joins that cluster instead. Row order is preserved, so the output equals the
local engine's on the same input. Each Ray worker process loads the models once (`cached_steps`) and keeps
them for its later batches.

Tasks, not an actor pool, so that a node lost mid-run costs no rows and repeats none: Ray reruns the lost
node's running tasks and rebuilds the finished blocks stored there from their lineage, on any node with a
free CPU. An actor of a lost node had to restart before its batches could rerun, and while the surviving
actors held every CPU it could not: one run of `tests/test_ray_cluster.py` (which kills a worker node
mid-run) hung that way.
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


def annotate_table(table: pa.Table, config: AnnotateConfig, threads: int) -> pa.Table:
    """One batch: its columns plus the marker columns."""
    batch = table.to_pydict()
    batch.update(run_steps(batch, config, threads))
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


def worker_cpus(ray: Any, num_proc: int) -> int:
    """CPUs per task: the live nodes' CPUs shared among `num_proc` tasks, but no more than the largest
    node has (a task asking for more would never be scheduled)."""
    cpus = [int(node["Resources"].get("CPU", 0)) for node in ray.nodes() if node["Alive"]]
    return max(1, min(max(cpus, default=1), sum(cpus) // num_proc))


def run_ray(
    ds: datasets.Dataset, config: AnnotateConfig, ray_config: RayConfig | None = None
) -> datasets.Dataset:
    """Annotate `ds` with up to `config.num_proc` Ray tasks at a time; returns the rows in input order."""
    if len(ds) == 0:
        return datasets.Dataset.from_dict({}, features=output_features(ds, config))
    ray = ensure_ray(ray_config)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = config.progress
    features = output_features(ds, config)
    threads = worker_cpus(ray, config.num_proc)
    table = ds.data.table.combine_chunks()
    # one task per block of at most shard_size rows, sliced here (`from_arrow` of one table is one block)
    size = max(1, min(config.shard_size, -(-len(ds) // config.num_proc)))
    data = ray.data.from_arrow([table.slice(start, size) for start in range(0, len(ds), size)])
    mapped = data.map_batches(
        annotate_table,
        fn_kwargs={"config": config, "threads": threads},
        batch_size=config.batch_size,
        batch_format="pyarrow",
        compute=ray.data.TaskPoolStrategy(size=config.num_proc),
        num_cpus=threads,
    )
    tables = [ray.get(ref) for ref in mapped.to_arrow_refs()]
    result = pa.concat_tables([t for t in tables if t.num_rows], promote_options="permissive")
    return datasets.Dataset(result).cast(features)
