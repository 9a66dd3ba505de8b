"""No import cycles in the package: not at module level, and not hidden inside functions either (a lazy
import that closes a cycle is still two modules that need each other). `if TYPE_CHECKING:` imports do not
count."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

SRC = Path(__file__).resolve().parents[1] / "src"


def _module_names() -> dict[str, Path]:
    names = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _imported(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The package modules `name` imports, with the packages each import runs (not its own ancestors)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    targets: set[str] = set()
    for statement in tree.body:
        if isinstance(statement, ast.If) and "TYPE_CHECKING" in ast.unparse(statement.test):
            continue
        for node in ast.walk(statement):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                module = ".".join([*base, *([node.module] if node.module else [])])
                targets.add(module)
                targets.update(f"{module}.{alias.name}" for alias in node.names)
    out = set()
    for target in targets:
        parts = target.split(".")
        for k in range(1, len(parts) + 1):
            prefix = ".".join(parts[:k])
            if prefix in modules and not (name == prefix or name.startswith(prefix + ".")):
                out.add(prefix)
    return out


def test_no_import_cycles() -> None:
    modules = _module_names()
    graph = nx.DiGraph()
    for name, path in modules.items():
        graph.add_node(name)
        graph.add_edges_from((name, target) for target in _imported(path, name, modules))
    assert graph.number_of_edges() > 100  # the graph was read
    assert "treasure.evaluate.config" in graph["treasure.evaluate.suites"]  # edges point the right way
    cycles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    assert cycles == []
