"""The annotator registry: steps chosen from the taxonomy and ordered by dependency; clear errors for an
unknown annotator, a cycle or a missing producer; adherence uses the same mapping; no import cycles."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from treasure.annotate.config import AnnotateConfig
from treasure.annotate.quality import QualityConfig
from treasure.annotate.registry import REGISTRY, Annotator, Registry
from treasure.annotate.steps import build_steps
from treasure.cli import main
from treasure.errors import TreasureError
from treasure.evaluate.reannotate import annotators_for
from treasure.taxonomy import Taxonomy, from_data

PACKAGE = Path(__file__).parents[1] / "src" / "treasure" / "annotate"


def _taxonomy(**annotators: str) -> Taxonomy:
    """One integer marker per (marker → annotator) pair."""
    markers = {m: {"kind": "integer", "annotator": a} for m, a in annotators.items()}
    return from_data({"markers": markers}, "test")


def _kind(name: str, produces: str, requires: tuple[str, ...] = (), helper: bool = False) -> Annotator:
    return Annotator(name, (produces,), lambda config: None, lambda config: requires, helper=helper)


def _plan(registry: Registry, tax: Taxonomy, selected: tuple[str, ...]) -> list[str]:
    return [a.name for a in registry.plan(SimpleNamespace(annotators=selected, taxonomy=tax))]


def test_default_plan_keeps_the_registered_order():
    assert [a.name for a in REGISTRY.plan(AnnotateConfig())] == [
        "source",
        "language",
        "rules",
        "embedding",
        "classifier",
        "quality",
    ]
    reward = AnnotateConfig(annotators=("quality",), quality=QualityConfig(reward_model=Path("rm")))
    assert [a.name for a in REGISTRY.plan(reward)] == ["quality"]  # no embedding for a reward model


def test_plan_orders_by_dependency_and_pulls_in_helpers():
    registry = Registry(
        [
            _kind("late", "x", requires=("y", "_h")),
            _kind("early", "y"),
            _kind("helper", "_h", requires=("y",), helper=True),
            _kind("unused", "z"),
        ]
    )
    tax = _taxonomy(x="late", y="early", z="unused")
    assert _plan(registry, tax, ("late", "early")) == ["early", "helper", "late"]
    assert _plan(registry, tax, ("late",)) == ["helper", "late"]  # `y` may come with the data


def test_taxonomy_naming_an_unknown_annotator_fails_clearly(capsys, tmp_path):
    path = tmp_path / "tax.yaml"
    path.write_text(
        "extends: default\nmarkers:\n  tone: {kind: categorical, values: [Warm], annotator: magic}\n",
        encoding="utf-8",
    )
    message = "taxonomy marker 'tone' names unknown annotator 'magic'; valid: source, language"
    with pytest.raises(TreasureError, match=message):
        build_steps(AnnotateConfig(taxonomy=Taxonomy.load(path)))
    with pytest.raises(SystemExit) as info:
        main(["taxonomy", "validate", str(path)])
    assert info.value.code == 1 and "names unknown annotator 'magic'" in capsys.readouterr().err


def test_cycle_and_missing_producer_fail_clearly():
    tax = _taxonomy(x="a", y="b")
    cycle = Registry([_kind("a", "x", requires=("y",)), _kind("b", "y", requires=("x",))])
    with pytest.raises(TreasureError, match="annotators a, b require each other's output"):
        _plan(cycle, tax, ("a", "b"))
    missing = Registry([_kind("a", "x", requires=("nowhere",)), _kind("b", "y")])
    with pytest.raises(TreasureError, match="annotator 'a' requires 'nowhere', which no annotator produces"):
        _plan(missing, tax, ("a", "b"))


def test_adherence_uses_the_taxonomy_mapping():
    tax = Taxonomy.default()
    makers = REGISTRY.makers(tax)
    for marker in tax.markers.values():
        expected = (marker.annotator,) if marker.annotator != "given" else REGISTRY.producers(marker.name)
        assert makers[marker.name] == expected
        assert set(makers[marker.name]) <= set(annotators_for([marker.name], tax))
    assert annotators_for(["length_bucket"], tax) == ("language", "rules")  # rules read language
    changed = from_data({"extends": "default", "markers": {"task": {"annotator": "llm"}}}, "test")
    assert annotators_for(["task"], changed) == ("llm",)


def test_ray_engine_does_not_import_the_pipeline():
    code = "import sys, treasure.annotate.ray_engine; print('treasure.annotate.pipeline' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_annotate_modules_import_each_other_without_cycles():
    graph = {}
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        graph[path.stem] = {
            node.module.rsplit(".", 1)[-1]
            for node in tree.body  # module level only: function-level and TYPE_CHECKING imports are lazy
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("treasure.annotate.")
        }
    visiting: list[str] = []

    def visit(name: str) -> None:
        assert name not in visiting, f"import cycle: {' -> '.join([*visiting, name])}"
        visiting.append(name)
        for other in graph.get(name, ()):
            visit(other)
        visiting.pop()

    for name in graph:
        visit(name)


STEP_KINDS = ("language", "rules", "embedding", "classifier", "quality")  # built from the default config


def test_each_step_writes_only_what_its_annotator_is_registered_to_produce():
    config = AnnotateConfig()
    for name in STEP_KINDS:
        step = REGISTRY.annotators[name].build(config)
        assert step is not None, name
        assert step.produces, name
        assert set(step.produces) <= set(REGISTRY.annotators[name].produces), name
