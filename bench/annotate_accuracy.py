"""Accuracy of the embedded annotators on labelled data the repo ships; writes the results JSON.

    .venv/bin/python bench/annotate_accuracy.py

- language: lingua (default LanguageConfig) on the LLMZoo multilingual prompts (10 languages x 100,
  language from the file name) and on the M-IFEval prompts (es, fr, ja);
- task / domain: the shipped classifier on data/dev/task_domain_dev.jsonl (per class, and task/domain
  accuracy per origin of the dev rows);
- code_type: the rules' code guesser on HumanEvalPack canonical solutions (6 languages x 164);
- quality: held-out Pearson/Spearman/MAE of the embedded ridge regressor, retrained by `train_quality` with
  the shipped defaults into a temporary file (the shipped weights are not touched).

Writes bench/results/annotate_accuracy.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from treasure import io
from treasure.annotate import TrainQualityConfig, train_quality
from treasure.annotate.accuracy import (
    DEV_SET,
    classifier_accuracy,
    code_type_accuracy,
    language_accuracy,
    per_class,
)
from treasure.annotate.language import LanguageAnnotator
from treasure.bundled import DATA_DIR
from treasure.taxonomy import Taxonomy

OUT = Path(__file__).resolve().parent / "results" / "annotate_accuracy.json"
M_IFEVAL = {"es": "Spanish", "fr": "French", "ja": "Japanese"}


def m_ifeval_accuracy() -> dict[str, Any]:
    """Language ID on the M-IFEval prompts (language from the file name)."""
    step = LanguageAnnotator(Taxonomy.default())
    gold, pred = [], []
    for code, language in M_IFEVAL.items():
        with gzip.open(DATA_DIR / f"multilingual/m_ifeval_{code}.jsonl.gz", "rt", encoding="utf-8") as f:
            for line in f:
                gold.append(language)
                pred.append(step.detect(json.loads(line)["prompt"]))
    return per_class(gold, pred)


def dev_by_origin(work: Path) -> dict[str, Any]:
    """Task and domain accuracy per origin group of the dev rows (alpaca, self_instruct, vicuna, ...)."""
    groups: dict[str, list[str]] = defaultdict(list)
    for line in DEV_SET.read_text(encoding="utf-8").splitlines():
        if line.strip():
            origin = json.loads(line)["origin"].split(":")[0]
            groups["humanevalpack" if origin.startswith("humanevalpack") else origin].append(line)
    out: dict[str, Any] = {}
    for name, lines in sorted(groups.items()):
        path = work / f"{name}.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        report = classifier_accuracy(path)
        out[name] = {m: {"n": r["n"], "accuracy": r["accuracy"]} for m, r in report.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        result: dict[str, Any] = {
            "command": ".venv/bin/python bench/annotate_accuracy.py",
            "language_llmzoo": language_accuracy(),
            "language_m_ifeval": m_ifeval_accuracy(),
            "classifier_dev": classifier_accuracy(),
            "classifier_dev_by_origin": dev_by_origin(work),
            "code_type_humanevalpack": code_type_accuracy(),
            "quality_holdout": train_quality(TrainQualityConfig(out=work / "quality.npz")),
        }
    result["seconds"] = round(time.perf_counter() - began, 1)
    io.atomic_write_text(args.out, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    summary = {
        k: v.get("accuracy", v) if isinstance(v, dict) else v
        for k, v in result.items()
        if k not in ("classifier_dev", "classifier_dev_by_origin")
    }
    summary["classifier_dev"] = {m: r["accuracy"] for m, r in result["classifier_dev"].items()}
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
