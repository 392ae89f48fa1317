"""The public API's docstrings stay numpydoc, true to the signatures, and free of benchmark figures.

Public API: every public callable of the modules in :data:`PUBLIC_MODULES` (their ``__all__``,
else every function and class a module defines under a name without a leading underscore) and
the stage functions behind ``moa-features extract``, ``annotate``, ``train``, ``predict``,
``activity`` and ``report`` (:data:`STAGE_FUNCTIONS`). Each has a numpydoc ``Parameters``
section naming exactly the parameters of its signature (when it takes any) and a ``Returns``
(or ``Yields``) section (when it returns something), read with the small parser below: a
section is a title underlined with dashes, a parameter an unindented ``name : type`` line.

Benchmark figures (speed-ups, timings, accuracies, treatment counts) live in ``benchmarks/``,
where they are measured and dated; no docstring of the package states one.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "moa_features"

PUBLIC_MODULES = (
    "moa_features.features",
    "moa_features.features.intensity",
    "moa_features.features.texture",
    "moa_features.features.correlation",
    "moa_features.features.filters",
    "moa_features.features.segmentation",
    "moa_features.features.morphology",
    "moa_features.features.units",
    "moa_features.features.catalog",
    "moa_features.models.registry",
    "moa_features.models.specs",
    "moa_features.models.splits",
    "moa_features.models.cnn",
    "moa_features.profiling",
    "moa_features.pipeline",
    "moa_features.training",
)
# The public functions behind the stages of `moa-features` (moa_features/cli.py's COMMANDS).
STAGE_FUNCTIONS = {
    "moa_features.extraction.core": ("extract",),
    "moa_features.extraction.cli": ("main",),
    "moa_features.annotate": ("annotate_treatments", "apply_annotation", "main"),
    "moa_features.training.cli": ("main",),
    "moa_features.predict": (
        "load_run",
        "predict_table",
        "activity_calls",
        "abstain",
        "treatment_calls",
        "run_predict",
        "main",
    ),
    "moa_features.activity": (
        "phenotypic_activity",
        "pseudo_treatments",
        "moa_consistency",
        "table_activity",
        "run_activity",
        "main",
    ),
    "moa_features.report": ("build_report", "main"),
}
NO_VALUE = frozenset({"None", "NoReturn", "Never"})


def public_names(module) -> list[str]:
    """``module.__all__``, else the functions and classes ``module`` defines without a leading ``_``."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and obj.__module__ == module.__name__
    ]


def public_callables() -> dict[str, object]:
    """``{"module.name": callable}`` for the public API checked here."""
    found: dict[str, object] = {}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in public_names(module):
            obj = getattr(module, name)
            if inspect.isfunction(obj) or inspect.isclass(obj):
                found[f"{module_name}.{name}"] = obj
    for module_name, names in STAGE_FUNCTIONS.items():
        module = importlib.import_module(module_name)
        found.update({f"{module_name}.{name}": getattr(module, name) for name in names})
    return found


def sections(doc: str) -> dict[str, list[str]]:
    """``{title: lines}`` of a numpydoc docstring: titles are lines underlined with dashes."""
    lines = inspect.cleandoc(doc).splitlines()
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    i = 0
    while i < len(lines):
        title = lines[i].strip()
        if title and i + 1 < len(lines) and re.fullmatch(r"-{3,}", lines[i + 1].strip()):
            current = found.setdefault(title, [])
            i += 2
            continue
        if current is not None:
            current.append(lines[i])
        i += 1
    return found


def documented_parameters(lines: list[str]) -> list[str]:
    """The names of a ``Parameters`` section: its unindented ``name : type`` (or ``a, b : type``) lines."""
    names = []
    for line in lines:
        if not line.strip() or line[0].isspace():
            continue
        head = line.split(" : ", 1)[0].strip().rstrip(":")
        names.extend(part.strip().lstrip("*") for part in head.split(","))
    return names


def signature_parameters(obj) -> list[str]:
    """The parameters a caller passes (``self`` and ``cls`` left out)."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return []
    return [name for name in signature.parameters if name not in ("self", "cls")]


def returns_value(func) -> bool:
    """Whether ``func`` returns something: its return annotation, else a ``return <value>`` in its body."""
    annotation = inspect.signature(func).return_annotation
    if annotation is not inspect.Signature.empty:
        text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", repr(annotation))
        return text not in NO_VALUE and annotation is not None
    node = ast.parse(textwrap.dedent(inspect.getsource(func))).body[0]

    def own_returns(n: ast.AST):
        for child in ast.iter_child_nodes(n):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
                continue
            if isinstance(child, ast.Return | ast.Yield | ast.YieldFrom):
                yield child
            yield from own_returns(child)

    return any(getattr(r, "value", None) is not None for r in own_returns(node))


def docstring_problems(obj) -> list[str]:
    """What keeps ``obj``'s docstring from the numpydoc contract above (empty when it meets it)."""
    doc = inspect.getdoc(obj) if inspect.isclass(obj) else obj.__doc__
    if not doc:
        return ["no docstring"]
    found = sections(doc)
    problems = []
    expected = signature_parameters(obj)
    if expected:
        if "Parameters" not in found:
            problems.append("no Parameters section")
        else:
            documented = documented_parameters(found["Parameters"])
            if missing := [p for p in expected if p not in documented]:
                problems.append(f"Parameters does not document {missing}")
            if stale := [p for p in documented if p not in expected]:
                problems.append(f"Parameters documents {stale}, which the signature does not have")
    if not inspect.isclass(obj) and returns_value(obj) and not {"Returns", "Yields"} & found.keys():
        problems.append("no Returns section")
    return problems


API = public_callables()


@pytest.mark.parametrize("name", sorted(API))
def test_public_docstring_is_numpydoc(name):
    problems = docstring_problems(API[name])
    assert not problems, f"{name}: " + "; ".join(problems)


def test_every_listed_module_has_public_callables():
    """A module whose names this check cannot see (e.g. lazy exports without ``__all__``) would pass unchecked."""
    empty = [m for m in PUBLIC_MODULES if not any(name.rpartition(".")[0] == m for name in API)]
    assert not empty, f"no public callable found in {empty}: give them an __all__"


def _example(a: int, *args: int, b: str = "", **kwargs: float) -> int:
    """Add.

    Parameters
    ----------
    a, *args : int
        Numbers.
    b : str
        Ignored; the line below is its description, not a parameter.
        c : not a parameter
    **kwargs : float
        More.

    Returns
    -------
    int
    """
    return a


def test_the_docstring_check_can_fail():
    """A complete docstring passes; a missing section, parameter or stale name is named."""
    assert docstring_problems(_example) == []

    def no_returns(a: int) -> int:
        """Add.

        Parameters
        ----------
        a : int
        """
        return a

    def stale(a: int, *, d: str = "") -> None:
        """Add.

        Parameters
        ----------
        a : int
        c : str
        """

    def unannotated(a):
        """Add."""

        def inner():
            return 1

        return

    assert docstring_problems(no_returns) == ["no Returns section"]
    assert docstring_problems(stale) == [
        "Parameters does not document ['d']",
        "Parameters documents ['c'], which the signature does not have",
    ]
    assert docstring_problems(unannotated) == ["no Parameters section"]
    assert docstring_problems(lambda: None) == ["no docstring"]


# Benchmark figures: a speed-up ratio, a timing, an accuracy (or points of it), a count of
# treatments classified right. Units and settings ("sigma in pixels", "a 5 s budget",
# "0.25 x EC50", "8/16-bit", "accuracy = sum of squared priors") are not figures.
BENCHMARK_FIGURE = re.compile(
    r"\b\d+(?:\.\d+)?(?:\s*-\s*\d+(?:\.\d+)?)?\s*[x×]\s+(?:faster|slower|quicker|the speed)"
    r"|\b\d+(?:\.\d+)?\s*(?:vs\.?|versus)\s*\d+(?:\.\d+)?\s*(?:ms|s|µs|us|min)\b"
    r"|\b\d+(?:\.\d+)?\s*(?:ms|µs)\b"
    r"|\b(?:faster|slower|quicker)\s+(?:than\s+\S+\s+)?(?:by|at)\s+\d"
    r"|\bat (?:half|a third|a quarter) (?:the|of the) time\b"
    r"|\b\d+(?:\.\d+)?\s*(?:%|points?)\s+(?:of\s+)?(?:\w+\s+)?(?:accuracy|recall|F1)\b"
    r"|\b\d?\.\d+\s+(?:\w+\s+)?(?:accuracy|recall|F1)\b"
    r"|\b(?:accuracy|recall|F1)\s*(?:of|=|:)?\s*\d?\.\d+"
    r"|\b\d+\s*/\s*\d+\s+(?:treatments|compounds|wells|plates|sites)\b",
    re.IGNORECASE,
)


@pytest.mark.parametrize(
    ("text", "is_figure"),
    [
        ("2.7x faster on a 1024x1024 plane", True),
        ("(7.7 vs 20.5 ms)", True),
        ("about 10x faster than ``np.percentile``", True),
        ("3-5x faster on a 1024x1024 cell plane", True),
        ("they match deeper, slower settings at half the time", True),
        ("plain cosine keeps its 97/103 treatments", True),
        ("it costs 10 points of treatment accuracy", True),
        ("+3 to +7 points of treatment accuracy", True),
        ("0.27 validation accuracy flat", True),
        ("balanced accuracy 0.85", True),
        ("sigma: Gaussian smoothing in pixels", False),
        ("the app uses a 5 s budget", False),
        ("the doses sit at 16, 4, 1 and 0.25 x EC50", False),
        ("one single-channel 8/16-bit PNG", False),
        ("degrees 0/45/90/135", False),
        ("accuracy = sum of squared priors; macro recall = 1 / k", False),
        ("``{prefix}accuracy_p``, ``balanced_accuracy``", False),
        ("a full-size 1024x1024 plane has ~4x that area", False),
    ],
)
def test_benchmark_figure_pattern(text, is_figure):
    assert bool(BENCHMARK_FIGURE.search(text)) is is_figure


def docstrings(path: Path):
    """``(line, name, docstring)`` of the module, classes and functions of the file at ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                yield getattr(node, "lineno", 1), getattr(node, "name", "<module>"), doc


def test_no_benchmark_figures_in_docstrings():
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line} {name}: {match.group(0)!r}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, name, doc in docstrings(path)
        for match in BENCHMARK_FIGURE.finditer(" ".join(doc.split()))
    ]
    assert not found, "benchmark figures belong in benchmarks/ (README.md, results_*.md):\n" + "\n".join(found)
