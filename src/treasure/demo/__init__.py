"""`make demo`: the whole loop on the embedded default (bundled real data, a real pretrained model).

prepare SmolLM2-135M-Instruct → annotate → build (marked + baseline) → train both → evaluate → show
answers per mode. `--recipe tiny` runs the same loop with the tiny from-scratch model instead.
Each stage writes under `runs/demo/<stage>/` and drops a `.done` file (its seconds and summary) when it
finishes, so a second run reuses finished stages and an interrupted run resumes at the first unfinished one.
"""

from treasure.demo.data import banded_thresholds, ladder_stem, length_ladder, select_rows
from treasure.demo.recipes import EVAL_FIELDS, RECIPES, DemoConfig, DemoRecipe
from treasure.demo.run import run_demo, run_stage

__all__ = [
    "EVAL_FIELDS",
    "RECIPES",
    "DemoConfig",
    "DemoRecipe",
    "banded_thresholds",
    "ladder_stem",
    "length_ladder",
    "run_demo",
    "run_stage",
    "select_rows",
]
