"""The feature modules import one another without a cycle, function-level imports included.

A cycle dodged by a late import (a function that imports a module which imports the function's
own module) works at run time but hides a tangle; the graph is read from the source with
:mod:`ast` (:func:`test_import_direction.imported_modules`, which sees imports inside functions
and skips only ``if TYPE_CHECKING:`` and ``__main__`` blocks).
"""

from __future__ import annotations

from pathlib import Path

from test_import_direction import PACKAGE, imported_modules, module_name

FEATURES = PACKAGE / "features"


def import_graph(folder: Path) -> dict[str, set[str]]:
    """``{module: modules of the same package it imports}`` for every ``.py`` file under ``folder``."""
    paths = sorted(folder.rglob("*.py"))
    names = {module_name(p) for p in paths}
    return {module_name(p): {target for _, target in imported_modules(p) if target in names} for p in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle ``[a, b, ..., a]`` of ``graph``, or ``None`` (depth-first search, sorted order)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_feature_modules_import_each_other_without_a_cycle():
    graph = import_graph(FEATURES)
    assert "moa_features.features.site" in graph and graph["moa_features.features"], "the graph was not read"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle among the feature modules: " + " -> ".join(cycle)


def test_a_late_import_cycle_is_found(tmp_path, monkeypatch):
    """The check fails on the kind of cycle it guards against: a function-level import back."""
    pkg = tmp_path / "moa_features" / "features"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from moa_features.features.b import g\n")
    (pkg / "b.py").write_text("def g():\n    from moa_features.features.a import f\n")
    (pkg / "c.py").write_text("from moa_features.features import a\n")
    import test_import_direction

    monkeypatch.setattr(test_import_direction, "PACKAGE", tmp_path / "moa_features")
    graph = import_graph(pkg)
    assert graph["moa_features.features.c"] == {"moa_features.features.a"}
    assert find_cycle(graph) == ["moa_features.features.a", "moa_features.features.b", "moa_features.features.a"]
