"""Shared pytest set-up. Fixture modules live beside this file, one per area, listed here."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytest_plugins = ["fixtures_model", "fixtures_server", "fixtures_annotate", "fixtures_stub"]

# The fast lane (`make test-fast`: -m "not slow") trains one model, the session's `tiny_model_dir`. A test
# that asks for a second trained model or a `treasure serve` process is slow whether or not it is marked.
SLOW_FIXTURES = {"tiny_baseline_dir", "openai_server", "llm_endpoint"}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
