"""Top-level pytest hooks: what applies to the package's doctests as well as to ``tests/``.

``--doctest-modules`` (setup.cfg) collects the Examples sections of ``moa_features``. Their
outputs are written for numpy >= 2, which prints scalars with their type (``np.float64(0.5)``,
NEP 51); under an older numpy (the minimum-versions job, ``.ci/floors.py``) they are skipped with
that reason, as scikit-learn does.
"""

from __future__ import annotations

import numpy as np
import pytest
from _pytest.doctest import DoctestItem


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if int(np.__version__.split(".")[0]) >= 2:
        return
    skip = pytest.mark.skip(reason=f"numpy {np.__version__} < 2 prints scalars without their type (NEP 51)")
    for item in items:
        if isinstance(item, DoctestItem):
            item.add_marker(skip)
