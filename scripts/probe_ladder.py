"""Does a marked model read its length markers where it decides to stop? A probe on its own training rows.

For each length ladder of a built train dir (a long answer and its copies cut after whole sentences,
`treasure.demo.length_ladder`), P(end of turn) is read right after each cut's last sentence twice: with the
cut's own `length_tokens` / `length_bucket` (in the prompt and in the block), and with the full answer's
(or with fixed ones, `--to BUCKET,N`).
A model that reads the markers stops at the cut with its own markers and goes on with the full answer's.
Printed: the means, split by whether the swap changes the bucket, and the first rows
(cut tokens, full tokens, cut bucket, full bucket, P own, P full). Used for docs/smollm2-demo-experiments.md.

Run: `.venv/bin/python scripts/probe_ladder.py MODEL_DIR TRAIN_DIR/train.jsonl [--ladders 60] [--to concise,20]`
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from treasure.demo import ladder_stem

LENGTH_TOKENS = re.compile(r"<length_tokens>(\d+)</length_tokens>")
LENGTH_BUCKET = re.compile(r"<length_bucket>(\w+)</length_bucket>")


def ladders(train_file: str, limit: int) -> list[dict[str, dict[str, Any]]]:
    """Rows grouped by ladder (id stem), full row under "", cuts under "cut<k>"; the first `limit`."""
    groups: dict[str, dict[str, dict[str, Any]]] = {}
    with open(train_file, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            stem, cut = ladder_stem(row["id"])
            groups.setdefault(stem, {})[cut] = row
    return [g for g in groups.values() if len(g) > 1 and "" in g][:limit]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("train_file")
    parser.add_argument("--ladders", type=int, default=60)
    parser.add_argument(
        "--to", help="BUCKET,N: swap every cut's length markers to these instead of the full answer's"
    )
    args = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32).eval()
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")

    def p_end(text: str) -> float:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        end = len(ids) - 1 - ids[::-1].index(eos)  # the answer's end-of-turn token
        with torch.no_grad():
            logits = model(torch.tensor([ids[:end]])).logits[0, -1]
        return torch.softmax(logits.float(), -1)[eos].item()

    results = []
    for group in ladders(args.train_file, args.ladders):
        full = group[""]["messages"][1]["content"]
        n_full, b_full = LENGTH_TOKENS.search(full).group(1), LENGTH_BUCKET.search(full).group(1)
        if args.to:
            b_full, n_full = args.to.split(",")
        for key, row in group.items():
            if not key:
                continue
            block = row["messages"][1]["content"]
            n_cut, b_cut = LENGTH_TOKENS.search(block).group(1), LENGTH_BUCKET.search(block).group(1)
            text = tokenizer.apply_chat_template(row["messages"], tokenize=False)
            swapped = text.replace(
                f"<length_tokens>{n_cut}</length_tokens>", f"<length_tokens>{n_full}</length_tokens>"
            ).replace(f"<length_bucket>{b_cut}</length_bucket>", f"<length_bucket>{b_full}</length_bucket>")
            results.append(
                (int(n_cut), int(n_full), b_cut, b_full, round(p_end(text), 3), round(p_end(swapped), 3))
            )
    own, other = [r[4] for r in results], [r[5] for r in results]
    print(
        f"cuts {len(results)}: mean P(end) own markers {statistics.mean(own):.3f}, "
        f"full answer's {statistics.mean(other):.3f}"
    )
    for name, keep in (("same bucket", lambda r: r[2] == r[3]), ("other bucket", lambda r: r[2] != r[3])):
        chosen = [r for r in results if keep(r)]
        if chosen:
            print(
                f"{name}: {len(chosen)} cuts, own {statistics.mean(r[4] for r in chosen):.3f}, "
                f"full {statistics.mean(r[5] for r in chosen):.3f}"
            )
    for pair in sorted({(r[2], r[3]) for r in results}):
        chosen = [r for r in results if (r[2], r[3]) == pair]
        print(
            f"{pair[0]} → {pair[1]}: {len(chosen)} cuts, own {statistics.mean(r[4] for r in chosen):.3f}, "
            f"full {statistics.mean(r[5] for r in chosen):.3f}"
        )
    for row in results[:25]:
        print(row)


if __name__ == "__main__":
    main()
