"""schemathesis (`--checks all`) against a live `treasure serve`: the API keeps its OpenAPI schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fixtures_server import start_server, stop_server

pytestmark = pytest.mark.slow  # a live `treasure serve` and 100 examples per operation

CONFIG = Path(__file__).parent / "schemathesis" / "schemathesis.toml"


def test_schemathesis_finds_nothing(random_model_dir: Path) -> None:
    process, base_url = start_server(random_model_dir, None, extra=["--max-new-tokens", "8"])
    try:
        schema = base_url.removesuffix("/v1") + "/openapi.json"
        command = [str(Path(sys.executable).with_name("st")), "--config-file", str(CONFIG), "run", schema]
        command += ["--checks", "all", "--max-examples", "100", "--seed", "0", "--output-truncate", "false"]
        command += ["--generation-database", "none"]  # the same cases on every machine, whatever ran before
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    finally:
        stop_server(process)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout
