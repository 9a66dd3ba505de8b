"""A quiet terminal: third-party progress bars, info logs and warnings off unless `--verbose` is given.

`quiet()` sets the switches of datasets, transformers, TRL, PEFT, huggingface_hub and vLLM through their
environment variables and loggers (nothing heavy is imported, so the CLI stays quick) and ignores the
warnings those libraries print on every run (e.g. transformers' `FutureWarning`s). Treasure's own rich
progress lines stay; training shows one (`treasure.train.TrainProgress`) instead of tqdm.
"""

from __future__ import annotations

import logging
import os
import warnings

STATE = {"quiet": False}
ENVIRONMENT = {
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "VLLM_LOGGING_LEVEL": "ERROR",  # vLLM configures its loggers (engine processes included) at this level
    "TOKENIZERS_PARALLELISM": "false",
    "TORCH_CPP_LOG_LEVEL": "ERROR",  # C++ warnings of torch (vLLM's engine process: NUMA binding)
    "TORCH_LOGS": "-all",  # torch's Python loggers at ERROR in child processes ("Triton not available")
    "PYTHONWARNINGS": "ignore::FutureWarning,ignore::UserWarning",  # child processes (vLLM's engine)
}
NOISY = ("datasets", "transformers", "trl", "peft", "accelerate", "huggingface_hub", "vllm", "torch", "spacy")


def quiet() -> None:
    """Silence third-party progress bars, info logs and warnings for the rest of the process."""
    STATE["quiet"] = True
    for name, value in ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.ERROR)
        for category in (FutureWarning, UserWarning, DeprecationWarning):
            warnings.filterwarnings("ignore", category=category, module=rf"{name}(\..*)?$")
    import sys

    if "datasets" in sys.modules:  # already imported: its bars read the variable at import time
        sys.modules["datasets"].disable_progress_bars()
    if "transformers" in sys.modules:
        sys.modules["transformers"].logging.set_verbosity_error()
        sys.modules["transformers"].logging.disable_progress_bar()


def is_quiet() -> bool:
    """Whether `quiet()` was called (then training shows one rich progress line instead of tqdm)."""
    return STATE["quiet"]
