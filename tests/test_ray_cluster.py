"""`treasure annotate --engine ray` on a real cluster shape: a head and a worker node started with
`ray start` as separate process groups on this machine, one CPU each, the CLI joining through RAY_ADDRESS.
The output is byte-identical to the local engine's, both nodes make output blocks, a worker node killed
with SIGKILL mid-run still leaves every row annotated exactly once, and one task fits a one-CPU head."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ray_nodes import Cluster, Node, cluster_env, kill_node, start_head, start_node, stop_node
from treasure import io
from treasure.annotate import AnnotateConfig, AnnotateFileConfig, annotate_file
from treasure.bundled import load_bundled

pytestmark = pytest.mark.slow

ANNOTATORS = ("language", "rules")
# 600 rows in blocks of 8: 75 batches, enough for the worker node to join in and be killed mid-run
ARGS = ["--annotators", ",".join(ANNOTATORS), "--batch-size", "8", "--shard-size", "8", "--quiet"]
CLI = [sys.executable, "-c", "from treasure.cli import main; main()", "annotate"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A head node. Every block goes to the object store of the node that made it (as blocks of the
    default 1,000 rows do), none back inline to the driver, so a killed node takes finished blocks with it."""
    env = {**cluster_env(), "RAY_max_direct_call_object_size": "1000"}
    head, address = start_head(env)
    try:
        yield Cluster(address, env)
    finally:
        stop_node(head)


@pytest.fixture
def worker(cluster: Cluster) -> Iterator[Node]:
    """A worker node (one CPU) joined to the head; its debug log records every task it runs."""
    node = start_node([f"--address={cluster.address}"], {**cluster.env, "RAY_BACKEND_LOG_LEVEL": "debug"})
    try:
        yield node
    finally:
        stop_node(node)


@pytest.fixture(scope="module")
def cluster_input(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """600 bundled rows as JSONL and the local engine's output for them."""
    ds, _ = load_bundled(limit_per_file=100)
    folder = tmp_path_factory.mktemp("ray_cluster")
    path = io.write_jsonl(ds.select_columns(["id", "prompt", "response", "quality"]), folder / "in.jsonl")
    config = AnnotateFileConfig(annotate=AnnotateConfig(annotators=ANNOTATORS))  # default batches and shards
    local = annotate_file(path, folder / "local.jsonl", config)
    return path, local.path.read_bytes()


@pytest.fixture
def annotate_on(cluster: Cluster) -> Iterator[Callable[..., subprocess.Popen]]:
    """Starts `treasure annotate --engine ray` joining the cluster through RAY_ADDRESS (stderr to
    OUT.stderr); a run still going at teardown is killed."""
    env = {**cluster.env, "RAY_ADDRESS": cluster.address, "RAY_DATA_ENABLE_STATS_SUMMARY_COLLECTION": "1"}
    started: list[subprocess.Popen] = []

    def start(source: Path, out: Path, num_proc: int = 2) -> subprocess.Popen:
        command = [*CLI, str(source), "-o", str(out), "--engine", "ray", "--num-proc", str(num_proc), *ARGS]
        with out.with_suffix(".stderr").open("wb") as stderr:
            started.append(subprocess.Popen(command, env=env, stderr=stderr))
        return started[-1]

    yield start
    for run in started:
        if run.poll() is None:
            run.kill()
            run.wait()


def finish(run: subprocess.Popen, out: Path) -> str:
    """Wait for the run; its stderr (the run must have succeeded)."""
    run.wait(timeout=240)
    stderr = out.with_suffix(".stderr").read_text(errors="replace")
    assert run.returncode == 0, stderr[-3000:]
    return stderr


def batches_started(node: Node) -> int:
    """Batches (Ray Data `_map_task` tasks) the node began, from its debug log."""
    return node.log_text("python-core-worker-*.log").count(b"function_name=_map_task,")


def nodes_with_blocks(cluster: Cluster) -> int:
    """Nodes that made output blocks in the cluster's last Ray Data run, from Ray Data's stats summary
    (the node ids in its blocks' metadata)."""
    code = (
        "import ray; ray.init(log_to_driver=False); "
        "print(ray.data.list_stats_summaries()[-1].operators_stats[-1].node_count.count)"
    )
    env = {**cluster.env, "RAY_ADDRESS": cluster.address}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return int(out.stdout)


def test_cluster_output_equals_local(cluster, worker, cluster_input, annotate_on, tmp_path: Path):
    source, local = cluster_input
    out = tmp_path / "ray.jsonl"
    finish(annotate_on(source, out), out)
    assert out.read_bytes() == local
    assert nodes_with_blocks(cluster) == 2


def test_worker_killed_mid_run_loses_and_repeats_no_row(worker, cluster_input, annotate_on, tmp_path: Path):
    source, local = cluster_input
    out = tmp_path / "ray.jsonl"
    run = annotate_on(source, out)
    deadline = time.monotonic() + 180
    while batches_started(worker) < 3:  # two batches done on the worker (its blocks live there), one running
        assert run.poll() is None, "the run ended before the worker node ran three batches"
        assert time.monotonic() < deadline
        time.sleep(0.1)
    kill_node(worker, signal.SIGKILL)
    assert run.poll() is None and not out.exists()
    stderr = finish(run, out)
    assert "lost objects by resubmitting their tasks" in stderr  # the worker's finished blocks were rebuilt
    assert out.read_bytes() == local


def test_head_alone_runs_one_task(cluster_input, annotate_on, tmp_path: Path):
    """One task at a time on a one-CPU head: it asks for the node's one CPU, not for the driver machine's two
    (which no node has: the run would wait forever)."""
    source, local = cluster_input
    out = tmp_path / "ray.jsonl"
    finish(annotate_on(source, out, num_proc=1), out)
    assert out.read_bytes() == local
