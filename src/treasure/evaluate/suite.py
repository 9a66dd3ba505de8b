"""The `Suite` protocol: what one suite of `treasure evaluate` declares, measures and shows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from treasure.evaluate.context import EvalContext
    from treasure.evaluate.render import Page


@runtime_checkable
class Suite(Protocol):
    """A suite; add one with `treasure.evaluate.suites.register(suite)`.

    `run` measures and returns the suite's section of metrics.json (JSON-able, stored under
    `section_key(name)`); `render` turns such a section, as read back from metrics.json, into the
    report's HTML ("" for nothing), built from `treasure.evaluate.render`'s escaping helpers.
    """

    name: str  # as given to --suites, e.g. "length-instruct"
    needs_baseline: bool  # compares against the baseline model (--baseline is then required)
    needs_judge: bool  # uses the pairwise judge (metrics.json then names it)

    def run(self, ctx: EvalContext) -> dict[str, Any]: ...

    def render(self, section: Mapping[str, Any], page: Page) -> str: ...


def section_key(name: str) -> str:
    """The metrics.json key of a suite's section: "length-instruct" → "length_instruct"."""
    return name.replace("-", "_")
