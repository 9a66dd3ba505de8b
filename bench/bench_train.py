"""Benchmark `treasure train` against plain TRL on the same rows, and the template overhead of `build`.

Writes bench/results/train.json:
- template overhead (median / p95 of template tokens / row tokens) on the bundled rows, annotated with the
  cheap annotators (source, language, rules), for the tiny tokenizer with tags kept whole and with whole
  marker lines as tokens; and the same with the categorical markers only (no numeric length markers);
- trained tokens/s of `treasure.train.train` (marked rows) and of a plain `SFTTrainer` on the same rows
  without markers (same tokenizer, same model init, same steps and batch), measured alternately in one run.

Absolute figures on a 2-core machine are noisy; the ratio is what counts.
Run: `.venv/bin/python bench/bench_train.py [--steps 20] [--rounds 2]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import datasets
from transformers import AutoTokenizer
from trl import SFTTrainer

from treasure import io
from treasure.annotate import AnnotateConfig, annotate
from treasure.artifacts import TAXONOMY, TrainDir, sidecar
from treasure.build import BuildConfig, build
from treasure.bundled import load_bundled
from treasure.tiny import load_size, make_model
from treasure.train import TrainConfig, to_prompt_completion, train, training_args

RESULTS = Path(__file__).parent / "results" / "train.json"
# the markers of the cheap annotators without the numeric ones (length_tokens/_sentences/_paragraphs)
CATEGORICAL_MARKERS = ("code_type", "format", "language", "length_bucket", "source")


def annotated_bundled(work: Path) -> Path:
    """Bundled rows annotated by the cheap annotators, written as `treasure annotate` would."""
    ds, _ = load_bundled()
    config = AnnotateConfig(annotators=("source", "language", "rules"))
    result = annotate(ds, config)
    path = work / "annotated.jsonl"
    io.write_jsonl(list(result.dataset), path)
    result.taxonomy.save(sidecar(path, TAXONOMY))
    return path


def plain_trl_tokens_per_s(train_dir: TrainDir, model_dir: Path, config: TrainConfig, out: Path) -> float:
    """Plain SFTTrainer on the rows without markers: same tokenizer, init, steps, batch, length."""
    train_raw = train_dir.split("train")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = make_model(tokenizer, load_size(config.size), config.seed)
    args = training_args(config, out, has_eval=False)
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=to_prompt_completion(train_raw), processing_class=tokenizer
    )
    began = time.perf_counter()
    trainer.train()
    return trainer.state.num_input_tokens_seen / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    opts = parser.parse_args()
    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        began = time.perf_counter()
        annotated = annotated_bundled(work)
        annotate_s = time.perf_counter() - began
        marked = build(annotated, work / "marked", BuildConfig(seed=0))
        plain = build(annotated, work / "plain", BuildConfig(seed=0, baseline=True, tokenizer=None))
        overhead = marked.build_report.template_overhead
        categorical = build(annotated, work / "categorical", BuildConfig(seed=0, markers=CATEGORICAL_MARKERS))
        overhead_categorical = categorical.build_report.template_overhead
        recipe = dict(max_steps=opts.steps, save_steps=0, eval_before=False, max_eval_rows=0, logging_steps=5)
        recipe["disable_tqdm"] = True
        treasure_runs, plain_runs = [], []
        for round_ in range(opts.rounds):
            config = TrainConfig.from_file(
                "tiny_demo", train_dir=marked.path, output_dir=work / f"model-{round_}", **recipe
            )
            treasure_runs.append(train(config).train_report.train_tokens_per_s)
            plain_runs.append(
                plain_trl_tokens_per_s(plain, work / f"model-{round_}", config, work / "plain-ckpt")
            )
    treasure_best, plain_best = max(treasure_runs), max(plain_runs)
    result = {
        "template_overhead": overhead,
        "overhead_rows": "bundled 9,250 rows, annotators source+language+rules, default dropout 0.5/0.5",
        "template_overhead_categorical_only": overhead_categorical,
        "categorical_markers": list(CATEGORICAL_MARKERS),
        "annotate_s": round(annotate_s, 1),
        "tokens_per_s": {
            "treasure_train_marked": treasure_runs,
            "plain_trl_no_markers": plain_runs,
            "median_ratio": round(statistics.median(treasure_runs) / statistics.median(plain_runs), 3),
            "best_ratio": round(treasure_best / plain_best, 3),
            "target_ratio": 0.95,
        },
        "setup": {
            "recipe": "tiny_demo",
            "steps": opts.steps,
            "rounds": opts.rounds,
            "cpu_threads": os.cpu_count(),
        },
        "note": "runs alternate (treasure, plain TRL, …) so any background load hits both sides alike",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
