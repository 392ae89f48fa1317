"""Shared fixtures: the real data (``../shared/data`` or the vendored ``tests/data``), copies to
corrupt, and the skip rules for tests whose data or browser is absent.

Tests that need the full shared data get a fixture that skips with a clear reason when it is
absent (a bare clone); fixtures marked "vendored" always resolve, to the shared copy when it is
present and otherwise to the small real fixture set in ``tests/data`` (``LICENSES.md`` there).
Plain helpers (data builders) live in ``_helpers.py``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from _helpers import ARTIFACTS, RXRX1, SHARED_DATA, VENDORED, missing_reason, real_data


def _browser_missing() -> str | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium and shutil.which("chromedriver"):
        return None
    return "headless Chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``browser`` skip, with the reason, when Chromium or chromedriver is absent."""
    reason = _browser_missing()
    if reason is None:
        return
    for item in items:
        if item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (the full real data); skips when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(missing_reason(SHARED_DATA))
    return SHARED_DATA


@pytest.fixture(scope="session")
def rxrx1_root() -> Path:
    """The full real RxRx1 sample (36 sites, 18 of them lacking w5/w6); skips when absent."""
    if not (RXRX1 / "metadata.csv").is_file():
        pytest.skip(missing_reason(RXRX1))
    return RXRX1


@pytest.fixture
def rxrx1_copy(tmp_path: Path, rxrx1_root: Path) -> Path:
    """A writable copy of the full real RxRx1 sample (to corrupt or extend in a test)."""
    dst = tmp_path / "rxrx1"
    shutil.copytree(rxrx1_root, dst)
    return dst


@pytest.fixture
def d18(tmp_path: Path, rxrx1_root: Path) -> Path:
    """The 18 ``_s1`` sites of the real RxRx1 sample (every channel present), copied."""
    import pandas as pd

    dst = tmp_path / "D"
    shutil.copytree(rxrx1_root / "images", dst / "images", ignore=shutil.ignore_patterns("*_s2_*"))
    meta = pd.read_csv(rxrx1_root / "metadata.csv")
    meta[meta["site"] == 1].to_csv(dst / "metadata.csv", index=False)
    return dst


@pytest.fixture(scope="session")
def rxrx1_sample() -> Path:
    """Vendored: three real RxRx1 sites in the RxRx layout, always present (read-only use).

    HUVEC-01 and U2OS-01 plate 1, well B02, site 1 with all six channels, and U2OS-01 site 2,
    which has only w1-w4 on disk (a real incomplete image set). ``metadata.csv`` has 3 rows.
    """
    return VENDORED / "rxrx1"


@pytest.fixture
def rxrx1_sample_copy(tmp_path: Path, rxrx1_sample: Path) -> Path:
    """A writable copy of :func:`rxrx1_sample`."""
    dst = tmp_path / "rxrx1_sample"
    shutil.copytree(rxrx1_sample, dst)
    return dst


@pytest.fixture(scope="session")
def ibsi_dir() -> Path:
    """Vendored: the IBSI digital phantom (``phantom.npy``, ``mask.npy``) and ``reference_values.csv``."""
    return real_data("ibsi")


@pytest.fixture(scope="session")
def bbbc021_dir() -> Path:
    """The full BBBC021 folder (image index, per-well means, crops); skips when absent."""
    return real_data("bbbc021", vendored=False)


@pytest.fixture(scope="session")
def bbbc021_moa() -> Path:
    """Vendored: ``BBBC021_v1_moa.csv`` (compound, concentration -> MoA; 103 treatments)."""
    return real_data("bbbc021/BBBC021_v1_moa.csv")


@pytest.fixture(scope="session")
def bbbc021_profiles_full() -> Path:
    """The full BBBC021 per-well CellProfiler profiles (632 wells, normalised, feature-selected); skips when absent."""
    path = SHARED_DATA / "bbbc021" / "BBBC021_feature_selected_mad_robustize.csv"
    if not path.is_file():
        pytest.skip(missing_reason(path))
    return path


@pytest.fixture(scope="session")
def bbbc021_profiles_slice() -> Path:
    """Vendored: 148 whole rows of :func:`bbbc021_profiles_full`, always present.

    Every well of Actin disruptors, Eg5 inhibitors and Microtubule destabilizers, plus the first
    DMSO well of each plate (``tests/data/bbbc021/BBBC021_profiles_slice.csv.gz``).
    """
    return VENDORED / "bbbc021" / "BBBC021_profiles_slice.csv.gz"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """``test-artifacts/`` (git-ignored): screenshots and files for people to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
