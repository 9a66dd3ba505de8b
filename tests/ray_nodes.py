"""Ray nodes as separate `ray start --block` process groups on this machine (one CPU each, own ports and
temp dir, token auth): the cluster shape of tests/test_ray_cluster.py and of bench/bench_annotate.py's
cluster section. A helper module, not a test file (pytest collects nothing here)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

RAY = str(Path(sys.executable).parent / "ray")
AGENT_PORTS = (
    "node-manager",
    "object-manager",
    "dashboard-agent-listen",
    "dashboard-agent-grpc",
    "runtime-env-agent",
    "metrics-export",
)


@dataclass
class Node:
    """One `ray start --block` process group (its raylet and agents; Ray's worker processes run in
    groups of their own and exit when their raylet is gone) with its own temp dir."""

    process: subprocess.Popen
    temp_dir: Path

    def log_text(self, pattern: str) -> bytes:
        """The node's session logs matching `pattern`, concatenated."""
        return b"".join(p.read_bytes() for p in (self.temp_dir / "session_latest" / "logs").glob(pattern))


@dataclass
class Cluster:
    """How to reach the head: its address and the environment (auth token) every process needs."""

    address: str
    env: dict[str, str]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node(args: list[str], env: dict[str, str], timeout_s: float = 120) -> Node:
    """`ray start --block ARGS` with one CPU, its own ports and a short temp dir (socket paths are
    limited); returns once the node is up."""
    temp = Path(tempfile.mkdtemp(prefix="trc-", dir="/tmp"))
    ports = [f"--{name}-port={free_port()}" for name in AGENT_PORTS]
    command = [
        RAY,
        "start",
        "--block",
        "--num-cpus=1",
        "--node-ip-address=127.0.0.1",
        f"--temp-dir={temp}",
        "--object-store-memory=200000000",
        "--disable-usage-stats",
        *ports,
        *args,
    ]
    log = temp / "start.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    node = Node(process, temp)
    deadline = time.monotonic() + timeout_s
    while b"Ray runtime started" not in log.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            output = log.read_text(errors="replace")[-3000:]
            stop_node(node)
            raise RuntimeError(f"ray start failed:\n{output}")
        time.sleep(0.2)
    return node


def kill_node(node: Node, sig: signal.Signals) -> None:
    """Send `sig` to the node's process group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(node.process.pid, sig)


def stop_node(node: Node) -> None:
    """SIGTERM the node, SIGKILL what is left after 3 s, remove its temp dir."""
    kill_node(node, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        node.process.wait(timeout=3)
    kill_node(node, signal.SIGKILL)
    node.process.wait()
    shutil.rmtree(node.temp_dir, ignore_errors=True)


def cluster_env() -> dict[str, str]:
    """This process's environment plus token auth with a fresh token (not ~/.ray's)."""
    return {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "HF_HUB_OFFLINE": "1",
    }


def start_head(env: dict[str, str]) -> tuple[Node, str]:
    """A head node (one CPU, no dashboard) and its address."""
    port = free_port()
    args = [f"--port={port}", f"--dashboard-port={free_port()}", f"--ray-client-server-port={free_port()}"]
    return start_node(["--head", "--include-dashboard=false", *args], env), f"127.0.0.1:{port}"
