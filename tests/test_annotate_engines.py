"""Engines: local with 2 processes, SIGKILL + --resume byte-identical, Ray Data equal to local."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from treasure.annotate import AnnotateConfig, AnnotateFileConfig, annotate, annotate_file
from treasure.annotate.pipeline import run_local
from treasure.errors import TreasureError

EMBEDDED = ("language", "rules", "classifier", "quality")


def _cli(args: list[str]) -> list[str]:
    return [sys.executable, "-c", "from treasure.cli import main; main()", "annotate", *args]


def test_two_processes_equal_one(bundled_sample):
    one = annotate(bundled_sample, AnnotateConfig(annotators=EMBEDDED, shard_size=30)).dataset
    two = annotate(bundled_sample, AnnotateConfig(annotators=EMBEDDED, shard_size=30, num_proc=2)).dataset
    assert one.to_list() == two.to_list()


@pytest.mark.slow
def test_sigkill_then_resume_is_byte_identical(tmp_path: Path, sample_jsonl: Path):
    args = ["--annotators", ",".join(EMBEDDED), "--shard-size", "4", "--quiet"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    clean = tmp_path / "clean.jsonl"
    annotate_file(
        sample_jsonl, clean, AnnotateFileConfig(annotate=AnnotateConfig(annotators=EMBEDDED, shard_size=4))
    )

    out = tmp_path / "out.jsonl"
    work = tmp_path / "out.jsonl.work"
    process = subprocess.Popen(_cli([str(sample_jsonl), "-o", str(out), *args]), env=env)
    deadline = time.monotonic() + 240
    while not (work / "shard-00002.parquet").exists():
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not out.exists()
    finished = {p.name: p.stat().st_mtime_ns for p in work.glob("shard-*.parquet")}
    assert 3 <= len(finished) < 15

    subprocess.run(
        _cli([str(sample_jsonl), "-o", str(out), *args, "--resume", "--keep-work"]),
        check=True,
        env=env,
        timeout=300,
    )
    assert out.read_bytes() == clean.read_bytes()
    for name, mtime in finished.items():
        assert (work / name).stat().st_mtime_ns == mtime  # finished shards were not redone
    assert len(list(work.glob("shard-*.parquet"))) == 15


def test_resume_refuses_changed_config(tmp_path: Path, bundled_sample):
    work = tmp_path / "work"
    run_local(bundled_sample, AnnotateConfig(annotators=("rules",), shard_size=20), work)
    with pytest.raises(TreasureError, match="cannot resume: config changed"):
        run_local(bundled_sample, AnnotateConfig(annotators=("language",), shard_size=20), work, resume=True)


@pytest.mark.slow
def test_ray_engine_equals_local(bundled_sample, tmp_path: Path):
    from treasure.annotate.ray_engine import RayConfig, ensure_ray

    ensure_ray(RayConfig(num_cpus=2))  # its own short temp dir (Ray sockets need short paths)
    local = annotate(bundled_sample, AnnotateConfig(annotators=EMBEDDED)).dataset
    ray_out = annotate(
        bundled_sample, AnnotateConfig(annotators=EMBEDDED, engine="ray", num_proc=2, shard_size=20)
    ).dataset
    assert ray_out.column_names == local.column_names
    assert ray_out.to_list() == local.to_list()
    import ray

    ray.shutdown()
