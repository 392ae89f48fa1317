"""Packaging contracts: every dependency declares a true floor that `.ci/floors.py` pins for the
minimum-versions job, the platform markers for XGBoost, and the licence files."""

from __future__ import annotations

import configparser
import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _floors_module():
    spec = importlib.util.spec_from_file_location("ci_floors", REPO / ".ci" / "floors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    return cfg


def test_every_requirement_is_pinned_to_its_floor():
    cfg = _cfg()
    extras = list(cfg["options.extras_require"])
    floors = _floors_module()
    lines = floors.requirement_lines(cfg, extras)
    pins = floors.floors(extras)
    assert lines and len(pins) <= len(lines)
    for line in lines:
        name = re.match(r"[A-Za-z0-9._-]+", line).group(0)
        assert re.search(r">=\s*\d", line), f"{line!r} declares no floor"
        assert any(p.startswith(f"{name}==") for p in pins), name
    for pin in pins:
        assert re.fullmatch(r"[A-Za-z0-9._-]+==[0-9][0-9A-Za-z.]*( ; .+)?", pin), pin
    names = [p.split("==")[0] for p in pins if " ; " not in p]
    assert len(names) == len(set(names)), "a distribution with two different floors"


def test_pin_keeps_markers_drops_extras_and_refuses_a_missing_floor():
    floors = _floors_module()
    assert floors.pin("jax[cpu]>=0.4.30") == "jax==0.4.30"
    assert (
        floors.pin('xgboost>=2.1.1,<4 ; platform_system == "Darwin"') == 'xgboost==2.1.1 ; platform_system == "Darwin"'
    )
    with pytest.raises(SystemExit, match="'numpy' declares no floor"):
        floors.pin("numpy")
    with pytest.raises(SystemExit, match="'numpy<3' declares no floor"):
        floors.pin("numpy<3")


def test_xgboost_installs_on_every_platform_and_unused_dependencies_are_gone():
    core = _cfg()["options"]["install_requires"]
    assert 'xgboost-cpu>=2.1.1 ; platform_system != "Darwin"' in core  # xgboost-cpu: no release before 2.1.1
    assert 'xgboost>=2.1.1 ; platform_system == "Darwin"' in core  # xgboost-cpu has no macOS wheels
    assert "psutil" not in core and not list(_imports_of("psutil"))
    # centrosome (CellProfiler's library) is the tests' reference for Propagation, never imported by the package
    assert "centrosome" not in core and "centrosome>=1.3.4" in _cfg()["options.extras_require"]["test"]
    assert {p.parent.name for p in _imports_of("centrosome")} <= {"tests"}


def _imports_of(module: str):
    pattern = re.compile(rf"^\s*(import|from)\s+{module}\b", re.M)
    for path in [*REPO.joinpath("moa_features").rglob("*.py"), *REPO.joinpath("tests").glob("*.py")]:
        if pattern.search(path.read_text(encoding="utf-8")):
            yield path


def test_licence_file_matches_the_declared_licence_and_names_the_vendored_data():
    cfg = _cfg()
    assert cfg["metadata"]["license"] == "BSD-3-Clause"
    files = cfg["metadata"]["license_files"].split()
    assert files == ["LICENSE", "THIRD_PARTY_NOTICES.md"]
    licence = (REPO / "LICENSE").read_text()
    assert licence.startswith("BSD 3-Clause License") and "the moa-features developers" in licence
    notices = (REPO / "THIRD_PARTY_NOTICES.md").read_text()
    for folder in sorted(p for p in (REPO / "tests" / "data").iterdir() if p.is_dir()):
        assert f"`tests/data/{folder.name}/`" in notices, f"{folder} has no third-party notice"


def test_readme_states_every_floor():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Supported versions", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    cfg = _cfg()
    for pin in _floors_module().floors(list(cfg["options.extras_require"])):
        name, version = pin.split(" ; ")[0].split("==")
        assert any(name in row and version in row for row in rows), f"README's Supported versions lacks {pin}"
