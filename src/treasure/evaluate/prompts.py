"""Evaluation prompts: the bundled AlpacaEval set (805 instructions with GPT-4 reference answers) or a
user JSONL file (`id`, `prompt`, optional reference `response`), sampled reproducibly."""

from __future__ import annotations

import gzip
import json
import random
from dataclasses import dataclass
from pathlib import Path

from treasure.bundled import DATA_DIR
from treasure.errors import DataError
from treasure.io import iter_records
from treasure.prompt_file import read_prompts

ALPACA_EVAL = DATA_DIR / "eval" / "alpaca_eval_gpt4_1106_preview.json.gz"


@dataclass(frozen=True)
class EvalPrompt:
    """One prompt; `reference` is a reference answer (AlpacaEval: gpt-4-1106-preview) or None."""

    id: str
    prompt: str
    reference: str | None = None
    dataset: str = ""


def alpaca_eval() -> list[EvalPrompt]:
    """The 805 AlpacaEval instructions with their gpt-4-1106-preview outputs as references."""
    with gzip.open(ALPACA_EVAL, "rt", encoding="utf-8") as handle:
        rows = json.load(handle)
    return [
        EvalPrompt(f"alpaca_eval-{i:03d}", r["instruction"], r["output"], r.get("dataset", ""))
        for i, r in enumerate(rows)
    ]


def user_prompts(path: Path) -> list[EvalPrompt]:
    """Rows of a user JSONL file; the optional `response` field is the reference answer."""
    rows = read_prompts(path)  # validates `prompt` (errors name the line)
    prompts = []
    for row, (line, record) in zip(rows, iter_records(path), strict=True):
        if record.get("markers") is not None:
            raise DataError(
                str(path),
                "evaluate sets markers per suite and mode, so per-row markers would be ignored; remove "
                "the field (`treasure generate --prompts` uses per-row markers)",
                line,
                "markers",
            )
        reference = record.get("response")
        if reference is not None and not isinstance(reference, str):
            raise DataError(str(path), "must be a string when present", line, "response")
        prompts.append(EvalPrompt(row["id"], row["prompt"], reference, "user"))
    return prompts


def sample(prompts: list[EvalPrompt], n: int, seed: int, salt: str = "") -> list[EvalPrompt]:
    """`n` prompts drawn without replacement (all of them, in order, when n ≥ len)."""
    if n >= len(prompts):
        return list(prompts)
    rng = random.Random(f"{seed}:{salt}")
    return [prompts[i] for i in sorted(rng.sample(range(len(prompts)), n))]
