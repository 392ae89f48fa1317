"""``python -m moa_features.annotate``: the ``moa-features annotate`` command."""

from moa_features.annotate.cli import main

raise SystemExit(main())
