"""adherence (controllability): ask for a marker value, re-annotate the answer, count matches.

For each (marker, value) the same prompts are answered under controlling and strict (the value also
prefilled in the model's own block); conditioning (no marker given) is the base rate: how often the
model lands on that value by itself. Each scale g of `guidance_scales` adds a column "controlling G=g":
controlling decoded with `GenerationConfig.guidance = g`. Answers are re-annotated with the annotators
that produce the marker, using the model dir's taxonomy (so `length_bucket` uses the thresholds it was
trained with). `readable_rate` counts the hits that are also readable text (`evaluate.degenerate`: not
empty, no stutter, no loop), so a value reached by repeating is not counted as obeyed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from treasure.annotate import AnnotateConfig, annotate_texts
from treasure.annotate.registry import REGISTRY
from treasure.backends import GenerationConfig
from treasure.evaluate.config import MODES, EvalConfig, guidance_label
from treasure.evaluate.degenerate import degenerate
from treasure.evaluate.prompts import EvalPrompt
from treasure.evaluate.runs import GenerationRuns
from treasure.taxonomy import Taxonomy

N_EXAMPLES = 3  # prompts whose answers under every mode and value are kept for the report
EXAMPLE_CHARS = 600


def annotators_for(markers: Sequence[str], tax: Taxonomy) -> tuple[str, ...]:
    """The annotators making `markers` under `tax` (its `annotator:` fields, through the registry), with
    those making the markers they read."""
    makers = REGISTRY.makers(tax)
    needed = {a for m in markers for a in makers.get(m, ())}
    return REGISTRY.with_inputs(needed, AnnotateConfig(taxonomy=tax))


def reannotate(
    prompts: Sequence[str], responses: Sequence[str], markers: Sequence[str], tax: Taxonomy
) -> list[dict]:
    """Markers of each (prompt, answer) as the annotators see them."""
    return annotate_texts(list(prompts), list(responses), annotators_for(markers, tax), tax)


def run_adherence(
    runs: GenerationRuns, prompts: Sequence[EvalPrompt], config: EvalConfig, tax: Taxonomy
) -> dict[str, Any]:
    """Adherence cells (marker, value, mode, rate, n), answer lengths per requested length bucket, and the
    answers to the first `N_EXAMPLES` prompts under every mode and value (`examples`)."""
    texts = [p.prompt for p in prompts]
    markers = list(config.adherence_markers)
    free = runs.run("adh-conditioning", "marked", texts)
    free_labels = reannotate(texts, [r["response"] for r in free], markers, tax)
    free_readable = [degenerate(r["response"]) is None for r in free]
    cells: list[dict[str, Any]] = []
    examples = [
        {"prompt": text, "answers": [_example("conditioning", None, row)]}
        for text, row in zip(texts[:N_EXAMPLES], free, strict=False)
    ]
    # (column, run name prefix, strict, decoding options): controlling and strict as configured, then
    # controlling decoded with each guidance scale
    requested: list[tuple[str, str, bool, GenerationConfig | None]] = [
        (m, m, m == "strict", None) for m in MODES if m in config.adherence_modes
    ]
    for scale in config.guidance_scales:
        guided = replace(config.generation, guidance=scale)
        requested.append((f"controlling {guidance_label(scale)}", f"controlling-g{scale:g}", False, guided))
    modes = ["conditioning", *(column for column, *_ in requested)]
    lengths: dict[str, dict[str, list[int]]] = {mode: {} for mode in modes}
    for marker, values in config.adherence_markers.items():
        for raw in values:
            value = tax.canonical(marker, raw)
            labels = {"conditioning": free_labels}
            readable = {"conditioning": free_readable}
            for mode, run_name, strict, generation in requested:
                rows = runs.run(
                    f"adh-{run_name}-{marker}-{value}",
                    "marked",
                    texts,
                    "controlling",
                    [{marker: value}] * len(texts),
                    strict,
                    generation,
                )
                labels[mode] = reannotate(texts, [r["response"] for r in rows], markers, tax)
                readable[mode] = [degenerate(r["response"]) is None for r in rows]
                for example, row in zip(examples, rows, strict=False):
                    example["answers"].append(_example(mode, f"{marker}={value}", row))
            for mode in modes:
                hits = [label.get(marker) == value for label in labels[mode]]
                read = [hit and ok for hit, ok in zip(hits, readable[mode], strict=True)]
                cells.append(
                    {
                        "marker": marker,
                        "value": str(value),
                        "mode": mode,
                        "rate": round(sum(hits) / len(hits), 4),
                        "readable_rate": round(sum(read) / len(read), 4),
                        "n": len(hits),
                    }
                )
                if marker == "length_bucket":
                    lengths[mode][str(value)] = [int(label.get("length_tokens", 0)) for label in labels[mode]]
    lengths["conditioning"] = {"(none)": [int(label.get("length_tokens", 0)) for label in free_labels]}
    return {"cells": cells, "modes": modes, "lengths": lengths, "examples": examples}


def _example(mode: str, asked: str | None, row: dict[str, Any]) -> dict[str, Any]:
    """One readable answer for the report: what was asked, the markers written, the answer (shortened)."""
    response = row["response"]
    if len(response) > EXAMPLE_CHARS:
        response = response[:EXAMPLE_CHARS] + " …"
    return {"mode": mode, "asked": asked, "markers": row.get("markers") or {}, "response": response}
