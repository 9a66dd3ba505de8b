"""The suite protocol and registry: built-ins satisfy it, and a plugin suite runs end to end."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from treasure.errors import TreasureError
from treasure.evaluate import EvalConfig, evaluate, register
from treasure.evaluate import config as config_module
from treasure.evaluate.context import EvalContext
from treasure.evaluate.render import Page, ReportConfig, esc, html_section
from treasure.evaluate.report import render_html
from treasure.evaluate.suite import Suite, section_key
from treasure.evaluate.suites import BUILT_IN, REGISTRY, resolve
from treasure.generate import MODES as GENERATION_MODES


class Stub:
    """A plugin suite: records the order it ran in and what the context gave it."""

    needs_baseline = False
    needs_judge = False

    def __init__(self, name: str, ran: list[str]):
        self.name = name
        self.ran = ran

    def run(self, ctx: EvalContext) -> dict[str, Any]:
        self.ran.append(self.name)
        once = ctx.shared("stub", lambda: len(self.ran))  # computed by the first stub only
        return {"models": sorted(ctx.models), "n_prompts": ctx.config.n_prompts, "once": once}

    def render(self, section: Mapping[str, Any], page: Page) -> str:
        return html_section(
            self.name, f"Stub {self.name}", "A test plugin.", f"<p>{esc(section['once'])}</p>"
        )


@pytest.fixture
def ran() -> Iterator[list[str]]:
    """Two stub suites registered for one test (removed afterwards); yields their run order."""
    order: list[str] = []
    for name in ("stub-a", "stub-b"):
        register(Stub(name, order))
    yield order
    for name in ("stub-a", "stub-b"):
        del REGISTRY[name]


def test_every_registered_suite_satisfies_the_protocol() -> None:
    assert tuple(REGISTRY.values()) == BUILT_IN
    assert set(config_module.DEFAULT_SUITES) < set(REGISTRY)
    needs_baseline = {n for n, s in REGISTRY.items() if s.needs_baseline}
    assert needs_baseline == {"length-instruct", "win-rate", "language-request", "long-tail"}
    empty = Page(ReportConfig(), {})
    for name, suite in REGISTRY.items():
        assert isinstance(suite, Suite) and suite.name == name and "_" not in name
        assert isinstance(suite.needs_baseline, bool) and isinstance(suite.needs_judge, bool)
        assert suite.render({}, empty).startswith("<section id=")  # an empty section says so


def test_register_rejects_duplicates_and_non_suites() -> None:
    with pytest.raises(TreasureError, match="already registered"):
        register(REGISTRY["adherence"])
    with pytest.raises(TreasureError, match="not a Suite"):
        register(object())  # type: ignore[arg-type]
    with pytest.raises(TreasureError, match="joined by '-'"):
        register(Stub("my_suite", []))


def test_plugin_suite_runs_in_config_order_into_metrics_and_report(ran: list[str], tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    config = EvalConfig(model_dir=model, out_dir=tmp_path / "out", suites="stub_b,stub-a", progress=False)
    metrics = evaluate(config)
    assert ran == ["stub-b", "stub-a"]
    section = {"models": ["marked"], "n_prompts": 100, "once": 1}
    assert metrics["suites"] == {"stub_b": section, "stub_a": section}
    assert metrics["judge"] is None
    assert json.loads((tmp_path / "out" / "metrics.json").read_text("utf-8"))["suites"] == metrics["suites"]
    page = (tmp_path / "out" / "report.html").read_text("utf-8")
    assert page.index("<h2>Stub stub-a</h2>") < page.index("<h2>Stub stub-b</h2>")  # registry order
    assert page == render_html(metrics)


def test_plugin_needing_a_baseline_requires_one(ran: list[str]) -> None:
    REGISTRY["stub-a"].needs_baseline = True
    with pytest.raises(TreasureError, match="stub-a compare against a baseline"):
        resolve(EvalConfig(model_dir=Path("m"), out_dir=Path("o"), suites="stub-a,adherence"))


def test_section_key_and_one_mode_vocabulary() -> None:
    assert section_key("marker-prediction") == "marker_prediction"
    assert (*GENERATION_MODES, "strict") == config_module.MODES
    with pytest.raises(TreasureError, match="adherence_modes"):
        EvalConfig(model_dir=Path("m"), out_dir=Path("o"), suites="adherence", adherence_modes=("fixed",))
