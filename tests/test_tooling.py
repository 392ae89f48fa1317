"""Packaging and tooling contracts: extras, optional-dependency errors, import-time side effects,
the lazy public API, and the CLI's stage chaining (real subprocesses, real files)."""

from __future__ import annotations

import ast
import configparser
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import moa_features
from moa_features import _optional, cli, pipeline

REPO = Path(__file__).resolve().parents[1]
# subprocesses import this checkout's package, whatever is installed
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def _setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    return cfg


def _requirements(text: str) -> set[str]:
    """Distribution names (with extras, lower case) of a setup.cfg requirement list."""
    names = set()
    for line in text.split("\n"):
        line = line.strip()
        if line and not line.startswith("#"):
            names.add(line.split(">")[0].split("=")[0].split("<")[0].strip().lower())
    return names


def test_extras_match_the_optional_registry_and_all_installs_them():
    cfg = _setup_cfg()
    extras = {k: _requirements(v) for k, v in cfg["options.extras_require"].items()}
    for extra, packages in _optional.EXTRAS.items():
        assert extras[extra] == set(packages), extra
        assert set(packages) <= extras["all"], f"[all] lacks the {extra} extra"
    core = _requirements(cfg["options"]["install_requires"])
    heavy = {"dask[distributed]", "keras", "jax[cpu]", "streamlit", "biopython"}
    assert not core & heavy, core & heavy
    assert "copairs" in core  # phenotypic activity (moa_features.activity)
    assert "pycytominer" in extras["test"] and "pycytominer" not in core  # only a test imports it


def test_require_names_the_extra_and_keeps_real_import_errors(tmp_path, monkeypatch):
    assert _optional.require("json", extra="core") is json
    with pytest.raises(_optional.MissingDependencyError, match=r'pip install "moa-features\[dask\]"') as err:
        _optional.require("no_such_module_xyz.sub", extra="dask", purpose="extract --scheduler")
    assert "extract --scheduler needs the optional dependency 'no_such_module_xyz.sub'" in str(err.value)
    assert isinstance(err.value, ImportError)
    # a module that is installed but fails inside its own imports is not reported as "missing"
    (tmp_path / "broken_pkg_xyz.py").write_text("import no_such_dependency_of_it_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_of_it_xyz") as err:
        _optional.require("broken_pkg_xyz", extra="app")
    assert not isinstance(err.value, _optional.MissingDependencyError)


def test_public_api_is_lazy_and_complete():
    for name in moa_features.__all__:
        assert getattr(moa_features, name) is not None, name
    assert moa_features.build_report.__module__ == "moa_features.report"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        moa_features.nope  # noqa: B018


IMPORT_PROBE = """
import json, os, sys
import matplotlib
before_env, before_backend = dict(os.environ), matplotlib.get_backend()
before_rc = dict(matplotlib.rcParams)
import importlib
for name in sys.argv[1:]:
    importlib.import_module(name)
changed = sorted(k for k in set(before_env) | set(os.environ) if before_env.get(k) != os.environ.get(k))
rc = sorted(k for k in before_rc if before_rc[k] != matplotlib.rcParams[k])
print(json.dumps({"env": changed, "backend": [before_backend, matplotlib.get_backend()], "rc": rc,
                  "heavy": sorted(m for m in ("keras", "jax", "streamlit", "dask", "Bio") if m in sys.modules)}))
"""


def _probe(*modules: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE, *modules],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env=ENV,
        timeout=300,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_package_and_the_cli_changes_nothing_and_stays_light():
    result = _probe("moa_features", "moa_features.cli", "moa_features.pipeline", "moa_features.schema")
    assert result == {"env": [], "backend": [result["backend"][0]] * 2, "rc": [], "heavy": []}


# calls that change process-wide state: never at import time in a library
GLOBAL_STATE_CALLS = {
    "os.environ.setdefault",
    "os.environ.update",
    "os.putenv",
    "matplotlib.use",
    "plt.switch_backend",
    "plt.style.use",
    "matplotlib.style.use",
    "sns.set",
    "sns.set_theme",
    "sns.set_style",
    "warnings.filterwarnings",
    "warnings.simplefilter",
    "logging.basicConfig",
    "np.random.seed",
    "np.seterr",
    "sys.path.insert",
    "sys.path.append",
    "jax.config.update",
    "keras.config.set_backend",
}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Subscript):
        return f"{_dotted(node.value)}[]"
    return "?"


def import_time_side_effects(source: str) -> list[tuple[int, str]]:
    """``(line, what)`` for statements run at import that change process-wide state.

    Module- and class-level code only (function bodies run later): assignments to
    ``os.environ[...]``, ``*.rcParams[...]`` or ``sys.path``, calls in :data:`GLOBAL_STATE_CALLS`
    and ``*.rcParams.update``.
    """
    found = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return
        if isinstance(node, (ast.Assign, ast.AugAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                name = _dotted(target)
                if name.startswith("os.environ") or "rcParams" in name or name.startswith("sys.path"):
                    found.append((node.lineno, f"{name} = ..."))
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in GLOBAL_STATE_CALLS or name.endswith("rcParams.update"):
                found.append((node.lineno, f"{name}(...)"))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return found


def test_no_module_changes_process_state_at_import():
    """No environment variable, matplotlib backend or rcParam, warning filter or seed is set by importing."""
    problems = [
        f"{path.relative_to(REPO)}:{line}: {what}"
        for path in sorted((REPO / "moa_features").rglob("*.py"))
        for line, what in import_time_side_effects(path.read_text(encoding="utf-8"))
    ]
    assert not problems, "process-wide state changed at import time:\n" + "\n".join(problems)


def test_side_effect_check_sees_module_level_code_only():
    source = (
        "import os, matplotlib\n"
        "os.environ['KERAS_BACKEND'] = 'jax'\n"
        "matplotlib.use('Agg')\n"
        "class A:\n    plt.rcParams.update({})\n"
        "def f():\n    os.environ['X'] = '1'\n    matplotlib.use('Agg')\n"
    )
    assert import_time_side_effects(source) == [
        (2, "os.environ[] = ..."),
        (3, "matplotlib.use(...)"),
        (5, "plt.rcParams.update(...)"),
    ]


def test_cli_commands_point_at_functions():
    for name, (target, help_) in cli.COMMANDS.items():
        module, _, function = target.partition(":")
        assert module.startswith("moa_features.") and function and help_, name
    assert cli.COMMANDS["extract"][0] == "moa_features.pipeline:extract_command"
    assert cli.COMMANDS["train"][0] == "moa_features.pipeline:train_command"
    assert cli.COMMANDS["activity"][0] == "moa_features.activity:main"


def test_default_outputs_follow_the_stages_rules():
    assert pipeline.extract_output(["data/screen.csv"]) == Path("features/screen.parquet")
    assert pipeline.extract_output(["--demo"]) == Path("features/demo.parquet")
    assert pipeline.extract_output(["x", "-o", "out/t.csv"]) == Path("out/t.csv")
    assert pipeline.train_output(["features/demo.parquet"]) == Path("models/demo")
    assert pipeline.train_output(["t.csv.gz", "-o", "runs/a"]) == Path("runs/a")


@pytest.mark.slow
def test_cli_extract_then_report_on_real_sites(tmp_path, rxrx1_sample):
    """`moa-features extract` (a real subprocess) writes the table, then the report; --no-report skips it."""
    table = tmp_path / "features" / "sample.parquet"

    def extract(*extra: str) -> subprocess.CompletedProcess:
        command = ["extract", str(rxrx1_sample), "-o", str(table), "--features", "intensity", "--thumbs", "0", "-q"]
        return subprocess.run(
            [sys.executable, "-m", "moa_features", *command, *extra],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=ENV,
            timeout=300,
        )

    run = extract()
    assert run.returncode == 3, run.stderr  # U2OS site 2 lacks w5/w6: some sites failed, the table is written
    assert table.is_file()
    html = tmp_path / "reports" / "sample.html"
    assert html.is_file() and f"report -> {Path('reports/sample.html')}" in run.stdout
    assert "moa-features extract" in html.read_text()  # the command is in the provenance section
    html.unlink()
    again = extract("--no-report")
    assert again.returncode == 3 and not html.exists()


def test_extract_whose_every_site_fails_says_why_the_report_is_missing(rxrx1_sample_copy, tmp_path, capsys):
    """Only the incomplete site (w5/w6 missing): extract fails every site; no report traceback hides that."""
    meta = pd.read_csv(rxrx1_sample_copy / "metadata.csv")
    meta[meta["site_id"] == "U2OS-01_1_B02_2"].to_csv(rxrx1_sample_copy / "metadata.csv", index=False)
    table = tmp_path / "t.parquet"
    status = pipeline.extract_command(
        [str(rxrx1_sample_copy), "-o", str(table), "--features", "intensity", "--thumbs", "0", "-q"]
    )
    err = capsys.readouterr().err
    assert status != 0
    assert "no report: no site of" in err and "was measured" in err
    assert "t.errors.parquet" in err and "Traceback" not in err
