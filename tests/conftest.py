"""Shared fixtures: paths to the real data in ../shared/data and copies to corrupt."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
RXRX1 = SHARED_DATA / "rxrx1"
BBBC021 = SHARED_DATA / "bbbc021"
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="session")
def rxrx1_root() -> Path:
    if not (RXRX1 / "metadata.csv").is_file():
        pytest.fail(f"real test data missing: {RXRX1} (the repo expects ../shared/data beside it)")
    return RXRX1


@pytest.fixture
def rxrx1_copy(tmp_path: Path, rxrx1_root: Path) -> Path:
    """A writable copy of the real RxRx1 sample (to corrupt or extend in a test)."""
    dst = tmp_path / "rxrx1"
    shutil.copytree(rxrx1_root, dst)
    return dst


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def load_rxrx1_site(experiment: str, plate: int = 1, well: str = "B02", site: int = 1):
    """A real RxRx1 site as a (6, 512, 512) uint8 array, read straight from its PNGs."""
    import numpy as np
    from PIL import Image

    folder = RXRX1 / "images" / experiment / f"Plate{plate}"
    return np.stack([np.asarray(Image.open(folder / f"{well}_s{site}_w{c}.png")) for c in range(1, 7)])
