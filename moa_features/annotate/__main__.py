"""``python -m moa_features.annotate``: the ``moa-features annotate`` command."""

from moa_features.annotate.cli import main
from moa_features.io import format_warnings

format_warnings("annotate")
raise SystemExit(main())
