"""Optional dependencies: import them where used, with an error that says what to install.

Heavy dependencies that only some commands need sit behind setup.cfg extras (``dask``,
``cnn``, ``app``, ``uniprot``). Code that needs one calls :func:`require` at the point of use,
never at module import, so ``import moa_features`` and the commands that do not need the
dependency work without it.

Examples
--------
>>> np = require("numpy", extra="core")
>>> int(np.arange(3).sum())
3
>>> try:
...     require("no_such_module_xyz", extra="dask", purpose="--scheduler")
... except MissingDependencyError as err:
...     print(err)  # doctest: +NORMALIZE_WHITESPACE
--scheduler needs the optional dependency 'no_such_module_xyz', which is not installed.
Install it with: pip install "moa-features[dask]"
"""

from __future__ import annotations

import importlib
from types import ModuleType

# extra -> what it installs (kept beside setup.cfg's [options.extras_require]; a test checks they agree)
EXTRAS: dict[str, tuple[str, ...]] = {
    "dask": ("dask[distributed]",),
    "cnn": ("keras", "jax[cpu]"),
    "app": ("streamlit",),
    "uniprot": ("biopython",),
}


class MissingDependencyError(ImportError):
    """An optional dependency is not installed; the message names the extra that installs it."""


def require(module: str, extra: str, purpose: str | None = None) -> ModuleType:
    """Import ``module``, or raise :class:`MissingDependencyError` naming the pip extra.

    Parameters
    ----------
    module : str
        Dotted module name, e.g. ``"dask.distributed"`` or ``"Bio.SwissProt"``.
    extra : str
        The setup.cfg extra that installs it, e.g. ``"dask"``.
    purpose : str, optional
        What needs it (a command or option, e.g. ``"--scheduler"``), shown in the message.

    Returns
    -------
    module
        The imported module.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        top = module.split(".")[0]
        if err.name is not None and err.name.split(".")[0] != top:
            raise  # the module exists but one of *its* imports failed: show the real cause
        who = purpose or "this feature"
        raise MissingDependencyError(
            f"{who} needs the optional dependency {module!r}, which is not installed. "
            f'Install it with: pip install "moa-features[{extra}]"',
            name=module,
        ) from err
