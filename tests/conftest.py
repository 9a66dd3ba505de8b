"""Shared pytest set-up. Fixture modules live beside this file, one per area, listed here."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytest_plugins = ["fixtures_model", "fixtures_server", "fixtures_annotate", "fixtures_stub"]
