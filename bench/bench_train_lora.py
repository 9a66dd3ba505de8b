"""Benchmark `treasure train` (LoRA on SmolLM2-135M-Instruct) against a plain PEFT + TRL run.

Both train on the same marked rows of the SmolLM2 demo recipe (bundled English rows, annotated with the
cheap annotators) with the same settings: LoRA r=16 on all linear layers, batch 8, max_length 256,
lr 1e-3, fp32, no gradient checkpointing, per-batch padding, the same steps. The plain run is written
the way a TRL user would write it (`SFTConfig` + `LoraConfig` + `SFTTrainer`), without treasure. Runs
alternate (treasure, plain, treasure, plain …) so background load hits both sides alike; trained tokens/s
are non-padding tokens seen / wall time of `trainer.train()` (treasure: its own `train.json`).
The comparison runs treasure with the plain loss (`decision_weight: 1`), as the plain run has; a third run
each round uses the recipe's decision weight, to show what the weighted loss costs.

Writes bench/results/train_lora.json.
Run: `.venv/bin/python bench/bench_train_lora.py [--steps 8] [--rounds 2]`.
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
import torch
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from treasure import io, models
from treasure.annotate import AnnotateConfig, annotate
from treasure.artifacts import TAXONOMY, TrainDir, sidecar
from treasure.build import BuildConfig, build
from treasure.bundled import load_bundled
from treasure.demo import RECIPES
from treasure.train import TrainConfig, row_lengths, to_prompt_completion, train

RESULTS = Path(__file__).parent / "results" / "train_lora.json"
SPEC = RECIPES["smollm2"]


def marked_rows(work: Path, n_rows: int) -> TrainDir:
    """A marked training set like the demo's: short bundled English rows, cheap annotators, its markers."""
    ds, _ = load_bundled()
    ds = ds.filter(
        lambda r: (
            len(r["prompt"].split()) <= SPEC.max_prompt_words
            and len(r["response"].split()) <= SPEC.max_response_words
        )
    )
    ds = ds.shuffle(seed=0).select(range(n_rows))
    result = annotate(
        ds, AnnotateConfig(annotators=("source", "language", "rules"), length_buckets="quantile")
    )
    path = work / "annotated.jsonl"
    io.write_jsonl(list(result.dataset), path)
    result.taxonomy.save(sidecar(path, TAXONOMY))
    markers = tuple(m for m in SPEC.markers if m in result.dataset.column_names)
    config = BuildConfig(
        seed=0,
        markers=markers,
        dataset_dropout=SPEC.dataset_dropout,
        marker_dropout=SPEC.marker_dropout,
        tokenizer=None,
    )
    return build(path, work / "train", config)


def plain_peft_trl(train_dir: TrainDir, model_dir: Path, config: TrainConfig, out: Path) -> float:
    """What a user writes without treasure: SFTConfig + LoraConfig + SFTTrainer, same settings."""
    rows = train_dir.split("train")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    data = to_prompt_completion(rows)
    keep = [i for i, n in enumerate(row_lengths(data, tokenizer)) if n <= config.max_length]
    args = SFTConfig(
        output_dir=str(out),
        max_steps=config.max_steps,
        per_device_train_batch_size=config.per_device_train_batch_size,
        learning_rate=config.learning_rate,
        max_length=config.max_length,
        bf16=False,
        activation_checkpointing=False,
        train_sampling_strategy=config.train_sampling_strategy,
        save_strategy="no",
        report_to="none",
        logging_steps=config.logging_steps,
        seed=config.seed,
        disable_tqdm=True,
        include_num_input_tokens_seen="non_padding",
    )
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=data.select(keep), processing_class=tokenizer, peft_config=lora
    )
    began = time.perf_counter()
    trainer.train()
    return trainer.state.num_input_tokens_seen / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rows", type=int, default=400)
    opts = parser.parse_args()
    datasets.disable_progress_bars()
    base = models.prepare(SPEC.model)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        train_dir = marked_rows(work, opts.rows)
        recipe = dict(max_steps=opts.steps, save_steps=0, max_eval_rows=0, logging_steps=4, model=str(base))
        recipe["disable_tqdm"] = True
        # LoRA as the demo trained until 2026-12-07 (the demo now trains all weights): r 16, all linear layers
        recipe.update(lora=True, merge=True, lora_r=16, lora_alpha=32, lora_dropout=0.0)
        treasure_runs, plain_runs, weighted_runs = [], [], []
        weight = TrainConfig.recipe(SPEC.train_recipe).get("decision_weight", 1.0)
        for round_ in range(opts.rounds):
            config = TrainConfig.from_file(
                SPEC.train_recipe,
                train_dir=train_dir.path,
                output_dir=work / f"model-{round_}",
                **recipe,
                decision_weight=1.0,
            )
            treasure_runs.append(train(config).train_report.train_tokens_per_s)
            plain_runs.append(round(plain_peft_trl(train_dir, base, config, work / "plain-ckpt"), 1))
            weighted = TrainConfig.from_file(
                SPEC.train_recipe, train_dir=train_dir.path, output_dir=work / f"weighted-{round_}", **recipe
            )
            weighted_runs.append(train(weighted).train_report.train_tokens_per_s)
            print(
                f"round {round_}: treasure {treasure_runs[-1]} tokens/s, plain {plain_runs[-1]}, "
                f"treasure with decision_weight {weight} {weighted_runs[-1]}",
                flush=True,
            )
    result = {
        "tokens_per_s": {
            "treasure_train_lora": treasure_runs,
            "plain_peft_trl": plain_runs,
            "median_ratio": round(statistics.median(treasure_runs) / statistics.median(plain_runs), 3),
            "target_ratio": 0.9,
            f"treasure_decision_weight_{weight:g}": weighted_runs,
            "weighted_vs_plain_loss_ratio": round(
                statistics.median(weighted_runs) / statistics.median(treasure_runs), 3
            ),
        },
        "setup": {
            "model": SPEC.model,
            "recipe": SPEC.train_recipe,
            "rows": opts.rows,
            "steps": opts.steps,
            "rounds": opts.rounds,
            "cpu_threads": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "note": "same rows, LoRA config and SFT settings; runs alternate; treasure includes its merge+save "
        "only outside the timed train() span, like the plain run",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
