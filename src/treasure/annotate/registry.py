"""Which annotator makes which marker: every step kind is registered here with its name (the
taxonomy's `annotator:` value and the `--annotators` entry), the columns it produces (`columns.PRODUCES`)
and requires, and a factory building its step from the annotate config.

A run uses the annotators the taxonomy names that the user selected (a `given` marker — one the data
carries — is made by the annotators producing it, if any), plus the helpers (the shared embedding) that
they require, each after the steps producing what it requires. A required column that no chosen step
produces is read from the data when present (e.g. a given `language` for the rules' tokenizer).

Step classes are imported when a factory runs, so reading the registry loads no model library.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from treasure.annotate.base import Step
from treasure.annotate.columns import PRODUCES
from treasure.annotate.embedding import EMBEDDING
from treasure.errors import TreasureError
from treasure.taxonomy import GIVEN, Taxonomy

if TYPE_CHECKING:
    from treasure.annotate.config import AnnotateConfig


def _nothing(config: AnnotateConfig) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class Annotator:
    """A registered step kind.

    `produces`: the columns its step can write; `whole_data`: markers it makes after every batch, from the
    whole dataset (the buckets); `requires(config)`: columns its step reads that other steps write;
    `build(config)`: its step, or None when the config gives it nothing to do; `helper`: pulled in by
    what others require, never named in a taxonomy or `--annotators`.
    """

    name: str
    produces: tuple[str, ...]
    build: Callable[[AnnotateConfig], Step | None]
    requires: Callable[[AnnotateConfig], tuple[str, ...]] = _nothing
    whole_data: tuple[str, ...] = ()
    helper: bool = False


class Registry:
    """Annotators in registration order (the order among steps that do not depend on each other)."""

    def __init__(self, annotators: Sequence[Annotator]):
        self.annotators = {a.name: a for a in annotators}
        self.names = tuple(a.name for a in annotators if not a.helper)

    def producers(self, column: str) -> tuple[str, ...]:
        """Names of the annotators that can produce `column`."""
        return tuple(a.name for a in self.annotators.values() if column in (*a.produces, *a.whole_data))

    def makers(self, taxonomy: Taxonomy) -> dict[str, tuple[str, ...]]:
        """Marker → the annotators making it, from the taxonomy's `annotator:` fields; an unknown name
        is a TreasureError."""
        out: dict[str, tuple[str, ...]] = {}
        for marker in taxonomy.markers.values():
            if marker.annotator == GIVEN:
                out[marker.name] = tuple(n for n in self.producers(marker.name) if n in self.names)
            elif marker.annotator in self.names:
                out[marker.name] = (marker.annotator,)
            else:
                raise TreasureError(
                    f"taxonomy marker '{marker.name}' names unknown annotator '{marker.annotator}'; "
                    f"valid: {', '.join((*self.names, GIVEN))}"
                )
        return out

    def with_inputs(self, names: Iterable[str], config: AnnotateConfig) -> tuple[str, ...]:
        """`names` plus the annotators making the markers they require (rules read language), in
        registration order."""
        makers = self.makers(config.taxonomy)
        needed, pending = set(names), list(names)
        while pending:
            for column in self.annotators[pending.pop()].requires(config):
                new = set(makers.get(column, ())) - needed
                needed |= new
                pending += new
        return tuple(n for n in self.names if n in needed)

    def plan(self, config: AnnotateConfig) -> list[Annotator]:
        """The annotators a run uses, in dependency order (see the module docstring)."""
        named = {n for names in self.makers(config.taxonomy).values() for n in names}
        chosen = [self.annotators[n] for n in self.names if n in named and n in config.annotators]
        pending = list(chosen)
        while pending:
            current = pending.pop()
            for column in current.requires(config):
                found = self.producers(column)
                if not found:
                    raise TreasureError(
                        f"annotator '{current.name}' requires '{column}', which no annotator produces"
                    )
                helper = self.annotators[found[0]]
                if helper.helper and helper not in chosen:
                    chosen.append(helper)
                    pending.append(helper)
        return self._ordered(chosen, config)

    def _ordered(self, chosen: list[Annotator], config: AnnotateConfig) -> list[Annotator]:
        """`chosen` sorted so that each comes after the producers of what it requires (registration order
        otherwise); a dependency cycle is a TreasureError."""
        rank = {name: i for i, name in enumerate(self.annotators)}
        after = {
            a.name: {p.name for p in chosen if p is not a and set(a.requires(config)) & set(p.produces)}
            for a in chosen
        }
        ordered: list[Annotator] = []
        while len(ordered) < len(chosen):
            done = {a.name for a in ordered}
            ready = [a for a in chosen if a.name not in done and after[a.name] <= done]
            if not ready:
                stuck = sorted(set(after) - done)
                raise TreasureError(f"annotators {', '.join(stuck)} require each other's output (a cycle)")
            ordered.append(min(ready, key=lambda a: rank[a.name]))
        return ordered


def _source(config: AnnotateConfig) -> Step | None:
    from treasure.annotate.source import SourceAnnotator

    if config.source.value or config.source.from_field:
        return SourceAnnotator(config.taxonomy, config.source)
    return None


def _language(config: AnnotateConfig) -> Step:
    from treasure.annotate.language import LanguageAnnotator

    return LanguageAnnotator(config.taxonomy, config.language)


def _rules(config: AnnotateConfig) -> Step:
    from treasure.annotate.rules import RulesAnnotator

    return RulesAnnotator(config.taxonomy, config.rules)


def _embedding(config: AnnotateConfig) -> Step:
    from treasure.annotate.embedding import EmbeddingStep

    return EmbeddingStep(config.embedding)


def _classifier(config: AnnotateConfig) -> Step:
    from treasure.annotate.classifier import Classifier

    return Classifier(config.taxonomy, config.classifier)


def _quality(config: AnnotateConfig) -> Step:
    from treasure.annotate.quality import QualityRegressor, RewardModelScorer

    if config.quality.reward_model is None:
        return QualityRegressor(config.quality)
    return RewardModelScorer(config.quality)


def _quality_requires(config: AnnotateConfig) -> tuple[str, ...]:
    return (EMBEDDING,) if config.quality.reward_model is None else ()


def _llm(config: AnnotateConfig) -> Step | None:
    from treasure.annotate.llm import LLMTagger

    return LLMTagger(config.taxonomy, config.llm) if config.llm is not None else None


REGISTRY = Registry(
    [
        Annotator("source", PRODUCES["source"], _source),
        Annotator("language", PRODUCES["language"], _language),
        Annotator(
            "rules",
            PRODUCES["rules"],
            _rules,
            requires=lambda config: ("language",),  # the word tokenizer is per language
            whole_data=("length_bucket", "quality_bucket"),
        ),
        Annotator("embedding", PRODUCES["embedding"], _embedding, helper=True),
        Annotator("classifier", PRODUCES["classifier"], _classifier, requires=lambda config: (EMBEDDING,)),
        Annotator("quality", PRODUCES["quality"], _quality, requires=_quality_requires),
        Annotator("llm", PRODUCES["llm"], _llm),
    ]
)
ANNOTATORS = REGISTRY.names


DEFAULT_ANNOTATORS = ("source", "language", "rules", "classifier", "quality")
