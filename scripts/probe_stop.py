"""Where does a marked model decide an answer's length? Read its own end-of-turn probabilities.

For each prompt and each marker setting (controlling mode), the model writes its completion greedily (the
rest of the template block, then the answer); then the completion is fed back once and, after every
sentence end of the answer, P(end of turn) is read: the model's stop-or-go-on decision there. Printed per
setting: the `length_tokens` the model wrote into its own block (median), answer words (median) and the
mean P(end of turn) after the first sentence. Used for docs/smollm2-demo-experiments.md.

Run: `.venv/bin/python scripts/probe_stop.py MODEL_DIR [--prompts 12] [--markers length_bucket=concise ...]`
"""

from __future__ import annotations

import argparse
import statistics

import torch

from treasure.backends import GenerationConfig
from treasure.evaluate.prompts import alpaca_eval, sample
from treasure.generate import Generator

SETTINGS = ("length_bucket=concise", "length_bucket=medium", "length_bucket=long")


def stop_probabilities(generator: Generator, text: str, completion: str) -> list[float]:
    """P(end of turn) after each sentence end of `completion`'s answer, fed after the prompt `text`."""
    backend = generator.backend
    tokenizer, model = backend.tokenizer, backend.model
    prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = tokenizer(text + completion, add_special_tokens=False)["input_ids"]
    close = completion.find("</TEMPLATE>") + len("</TEMPLATE>")
    block = completion[: close + len(completion[close:]) - len(completion[close:].lstrip())]
    answer_start = len(tokenizer(text + block, add_special_tokens=False)["input_ids"])
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    probs = []
    for position in range(max(answer_start, len(prompt_ids)), len(ids)):
        piece = tokenizer.decode(ids[position])
        if piece.rstrip().endswith((".", "!", "?")) or piece.endswith("\n"):
            probs.append(torch.softmax(logits[position].float(), -1)[eos].item())
    return probs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("--prompts", type=int, default=12)
    parser.add_argument("--markers", nargs="*", default=list(SETTINGS))
    parser.add_argument("--max-new-tokens", type=int, default=160)
    args = parser.parse_args()
    generator = Generator.from_model_dir(args.model_dir)
    prompts = [p.prompt for p in sample(alpaca_eval(), args.prompts, seed=1, salt="probe")]
    config = GenerationConfig(max_new_tokens=args.max_new_tokens, temperature=0.0, batch_size=len(prompts))
    for setting in args.markers:
        name, value = setting.split("=", 1)
        markers = [{name: int(value) if value.isdigit() else value}] * len(prompts)
        out = generator.generate(prompts, "controlling", markers, config=config)
        written = [g.markers.get("length_tokens") for g in out]
        words = [len(g.response.split()) for g in out]
        first_stop = []
        for prompt, marker, g in zip(prompts, markers, out, strict=True):
            probs = stop_probabilities(
                generator, generator.prepare(prompt, "controlling", marker).text, g.raw
            )
            if probs:
                first_stop.append(probs[0])
        numbers = [w for w in written if isinstance(w, int)]
        stop = statistics.mean(first_stop) if first_stop else float("nan")
        print(
            f"{setting:28s} length_tokens written: median {statistics.median(numbers) if numbers else None} "
            f"{numbers} | words median {statistics.median(words)} {words} | "
            f"P(end) after 1st sentence mean {stop:.3f}"
        )


if __name__ == "__main__":
    main()
