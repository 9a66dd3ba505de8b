"""Re-annotation: the markers the annotators see in an answer, as adherence, language request and the
reference labels (marker prediction, long tail) read them.

Answers are re-annotated with the annotators that produce the markers asked for (with those making the
markers they read), using the given taxonomy (so `length_bucket` uses the thresholds a model was trained
with)."""

from __future__ import annotations

from collections.abc import Sequence

from treasure.annotate import AnnotateConfig, annotate_texts
from treasure.annotate.registry import REGISTRY
from treasure.taxonomy import Taxonomy


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
