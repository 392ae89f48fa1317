"""Stages flow one way: no module under ``moa_features/`` imports a stage that comes later.

The layers, earliest first (a module may import its own layer and earlier ones):

0. foundation: the package root, ``schema``, ``columns``, ``io``, ``display``, ``votes``, ``runs``, ``_optional``
   (file formats and helpers every stage uses);
1. inputs: ``datasets``, ``masks``, ``synthetic`` (images, users' label masks and metadata) and ``annotate``
   (treatment names -> MoA; it needs only metadata, so extraction may annotate as it reads);
2. per-site measurement: ``features``, ``illumination``, ``calibration`` (the first pass);
3. ``extraction`` (images -> feature table; ``extract`` is its ``python -m`` entry);
4. profiles: ``profiling`` (normalisation, consensus); ``activity`` (phenotypic activity, mAP) sits with ``models``;
5. ``models`` (estimators, splitters, registry);
6. ``training`` (evaluation run -> ``models/RUN``; ``train`` is its ``python -m`` entry);
7. ``predict`` (a saved run applied to a table);
8. ``report``, ``reports`` (HTML from tables and runs);
9. ``app`` (people look and vote);
10. orchestration: ``pipeline``, ``cli``, ``demo``, ``__main__`` chain the stages and may import any.

Also, the pipeline's steps ``extract``, ``train``, ``predict``, ``report`` and ``app`` never import
one another, not even backwards: what two steps share lives in an earlier layer.

No import cycle either: no module imports one that imports it back, directly or through other
modules, late imports inside functions included (a late import only hides a cycle).

Imports are read from the source with :mod:`ast` (also those inside functions); only the
``if __name__ == "__main__":`` block (a script entry point) and ``if TYPE_CHECKING:`` blocks are
exempt.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "moa_features"
LAYERS: tuple[frozenset[str], ...] = tuple(
    frozenset(names)
    for names in (
        {"moa_features", "schema", "columns", "io", "display", "votes", "runs", "_optional"},
        {"datasets", "masks", "synthetic", "annotate"},
        {"features", "illumination", "calibration"},
        {"extraction"},
        {"profiling"},
        {"models", "activity"},  # activity selects features with models.preprocessing
        {"training"},
        {"predict"},
        {"report", "reports"},
        {"app"},
        {"pipeline", "cli", "demo", "__main__"},
    )
)
STEPS = frozenset({"extraction", "training", "predict", "report", "app"})
NON_CODE = frozenset({"data"})  # package data folders, no modules
# Cycles being removed on another branch (wt-seg splits features/objects.py); the xfail below
# turns into a failure the day they are gone, so that this entry is deleted with them.
# ``python -m moa_features.<entry>`` modules that re-export a subpackage: one unit with it.
ENTRY_POINTS = {"train": "training", "extract": "extraction"}


def component(module: str) -> str:
    """The top-level unit of ``moa_features.<unit>[.sub...]``; ``moa_features`` itself for the root."""
    parts = module.split(".")
    unit = parts[1] if len(parts) > 1 else parts[0]
    return ENTRY_POINTS.get(unit, unit)


def layer_of(unit: str) -> int:
    for i, names in enumerate(LAYERS):
        if unit in names:
            return i
    raise KeyError(unit)


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _exempt(node: ast.If) -> bool:
    """``if __name__ == "__main__":`` or ``if TYPE_CHECKING:``."""
    test = node.test
    if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
        return True
    if isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING":
        return True
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators)
    )


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` for every ``moa_features`` module imported by the file at ``path``.

    ``from moa_features import x`` counts as importing ``moa_features.x`` (a submodule, or the
    root when ``x`` is a name defined there); relative imports are resolved.
    """
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _exempt(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "moa_features")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] == "moa_features":
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    is_module = (PACKAGE.parent / Path(*sub.split("."))).with_suffix(".py").is_file() or (
                        PACKAGE.parent / Path(*sub.split("."))
                    ).is_dir()
                    found.append((node.lineno, sub if is_module else source))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return found


def violations() -> list[str]:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        unit = component(module_name(path))
        own = layer_of(unit)
        for line, target in imported_modules(path):
            other = component(target)
            if other == unit:
                continue
            where = f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}"
            if layer_of(other) > own:
                problems.append(f"{where}: a later stage ({other}, layer {layer_of(other)} > {unit}, layer {own})")
            elif unit in STEPS and other in STEPS:
                problems.append(f"{where}: pipeline steps do not import one another (move the shared code earlier)")
    return problems


def import_graph() -> dict[str, dict[str, int]]:
    """``{module: {imported module: line of the first such import}}`` over the package's modules."""
    graph: dict[str, dict[str, int]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        edges = graph.setdefault(name, {})
        for line, target in imported_modules(path):
            if target != name:
                edges.setdefault(target, line)
    return graph


def import_cycles() -> list[tuple[str, ...]]:
    """The sets of modules that import one another in a circle, each sorted, late imports included.

    The strongly connected components of :func:`import_graph` with more than one module
    (Tarjan's algorithm, iterative); a module importing itself is not a cycle.
    """
    graph = import_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[tuple[str, ...]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for nxt in successors:
                if nxt not in graph:
                    continue
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(graph[nxt])))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        cycles.append(tuple(sorted(component)))
    return sorted(cycles)


def describe_cycle(cycle: tuple[str, ...]) -> str:
    """The imports that close ``cycle``: ``a.py:12 imports b`` for each edge inside it."""
    graph = import_graph()
    return "; ".join(f"{a}:{graph[a][b]} imports {b}" for a in cycle for b in sorted(graph[a]) if b in cycle)


def test_every_module_has_a_layer():
    units = {component(module_name(p)) for p in PACKAGE.rglob("*.py")}
    unknown = sorted(u for u in units if not any(u in names for names in LAYERS))
    assert not unknown, f"classify these modules in LAYERS of {Path(__file__).name}: {unknown}"
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders - units <= NON_CODE, folders - units


def test_no_module_imports_a_later_stage():
    problems = violations()
    assert not problems, "imports against the pipeline's direction:\n" + "\n".join(problems)


def fake_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str]) -> Path:
    """A ``moa_features`` folder of ``files`` (relative path -> source) under ``tmp_path``, checked instead of ours."""
    pkg = tmp_path / "moa_features"
    for name, source in files.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(source)
    monkeypatch.setitem(globals(), "PACKAGE", pkg)
    return pkg


def test_no_import_cycle():
    """No module imports one that imports it back (through any chain, function-level imports included)."""
    cycles = import_cycles()
    assert not cycles, "import cycles (move what both need to a module both import):\n" + "\n".join(
        describe_cycle(c) for c in cycles
    )


def test_a_late_import_cycle_is_reported(tmp_path, monkeypatch):
    """A cycle closed by an import inside a function, through a third module, is found; a one-way chain is not."""
    pkg = fake_package(
        tmp_path,
        monkeypatch,
        {
            "__init__.py": "",
            "a.py": "from moa_features.b import f\n",
            "b.py": "import moa_features.c\n\ndef f():\n    return 1\n",
            "c.py": "def g():\n    from moa_features import a\n",
            "d.py": "from moa_features import a\n",
        },
    )
    assert import_cycles() == [("moa_features.a", "moa_features.b", "moa_features.c")]
    assert describe_cycle(import_cycles()[0]) == (
        "moa_features.a:1 imports moa_features.b; moa_features.b:1 imports moa_features.c; "
        "moa_features.c:2 imports moa_features.a"
    )
    (pkg / "c.py").write_text("def g():\n    from moa_features import schema\n")
    assert import_cycles() == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from moa_features.report import build_report", [(1, "moa_features.report")]),
        ("from moa_features import schema, __version__", [(1, "moa_features.schema"), (1, "moa_features")]),
        ("def f():\n    import moa_features.models.gbm", [(2, "moa_features.models.gbm")]),
        ("from .html import slug", [(1, "moa_features.reports.html")]),
        ("if __name__ == '__main__':\n    from moa_features.train import main", []),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from moa_features.train import Settings", []),
    ],
)
def test_imports_are_read_from_the_source(tmp_path, monkeypatch, source, expected):
    """The parser sees function-level and relative imports, and skips only the exempt blocks."""
    empty = ("schema.py", "report.py", "train.py", "reports/html.py", "reports/__init__.py", "models/gbm.py")
    pkg = fake_package(tmp_path, monkeypatch, {**dict.fromkeys(empty, ""), "reports/sections.py": source})
    assert imported_modules(pkg / "reports" / "sections.py") == expected


def test_a_backward_import_is_reported(tmp_path, monkeypatch):
    """The check fails on a real violation: a stage importing a later one, and a step importing a step."""
    fake_package(
        tmp_path,
        monkeypatch,
        {
            "__init__.py": "",
            "report.py": "",
            "train.py": "",
            "extract.py": "def main():\n    from moa_features.report import build_report\n",
            "predict.py": "from moa_features.train import thumbnail_reference\n",
        },
    )
    problems = violations()
    assert len(problems) == 2
    assert problems[0].startswith("moa_features/extract.py:2 imports moa_features.report: a later stage")
    assert problems[1].startswith("moa_features/predict.py:1 imports moa_features.train: pipeline steps")
