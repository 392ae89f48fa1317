"""One command line (issue 24 item 6): one-line warnings naming the command, no advice about options it lacks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_activity import batch_screen

from moa_features import schema

from _helpers import BBBC021, missing_reason

ROOT = Path(__file__).resolve().parents[1]
PROFILES = BBBC021 / "BBBC021_feature_selected_mad_robustize.csv"
SOURCE_LINE = re.compile(r"\.py:\d+|Warning:|^\s{2,}\S", re.M)  # what Python's own warning display prints


def _moa_features(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "moa_features", *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env,
        timeout=600, check=False,
    )  # fmt: skip


def test_warnings_are_one_line_naming_the_command(tmp_path):
    df = batch_screen()
    df = df[~((df[schema.TREATMENT] == "DMSO") & (df[schema.PLATE] == "B1_P0"))]  # a plate without controls
    table = tmp_path / "wells.csv"
    df.to_csv(table, index=False)
    proc = _moa_features("activity", table, "-o", tmp_path / "act.csv", "--null-size", "200", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "warning:" in line]
    assert warnings and all(line.startswith("moa-features activity: warning: ") for line in warnings)
    plates = [line for line in warnings if "1 plate(s) without negative-control wells (B1_P0)" in line]
    assert len(plates) == 1 and not SOURCE_LINE.search(proc.stderr), proc.stderr


@pytest.mark.skipif(not PROFILES.is_file(), reason=missing_reason(PROFILES))
def test_an_already_normalised_table_gets_no_advice_about_options_the_command_lacks(tmp_path):
    """report and activity on pycytominer's normalised BBBC021 profiles: no raw warnings, no "--normalize" to report."""
    proc = _moa_features(
        "report", PROFILES, "--treatment", "Metadata_Compound", "-o", tmp_path / "r.html", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "--normalize" not in proc.stderr and not SOURCE_LINE.search(proc.stderr), proc.stderr
    assert "PerformanceWarning" not in proc.stderr and "DataFrame is highly fragmented" not in proc.stderr
    extra = pd.DataFrame(0, index=range(632), columns=[f"Metadata_extra_{i}" for i in range(120)])
    wide = pd.concat([extra, pd.read_csv(PROFILES)], axis=1)  # many metadata columns
    path = tmp_path / "wide.csv"
    wide.to_csv(path, index=False)
    proc = _moa_features("activity", path, "--treatment", "Metadata_Compound", "-o", tmp_path / "a.csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    # activity centres every table on its plates' controls, normalised or not (no batch leakage)
    assert "[activity] normalisation: pooled;" in proc.stderr and "already centred" not in proc.stderr
    assert not SOURCE_LINE.search(proc.stderr) and "fragmented" not in proc.stderr, proc.stderr
