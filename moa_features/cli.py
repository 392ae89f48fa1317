"""``moa-features``: one command, one subcommand per pipeline stage.

Each subcommand is the ``main(argv)`` of its module, so ``moa-features extract ...`` and
``python -m moa_features.extract ...`` are the same program. Modules are imported only when
their subcommand runs, which keeps start-up fast (no Keras unless a CNN is trained).
"""

from __future__ import annotations

import sys
from importlib import import_module

COMMANDS = {
    "extract": ("moa_features.extract", "extract a per-site feature table from images"),
    "annotate": ("moa_features.annotate", "map treatments to mechanisms of action"),
    "train": ("moa_features.train", "train and evaluate models on held-out plates"),
    "predict": ("moa_features.predict", "predict MoAs with a trained run"),
    "report": ("moa_features.report", "write the HTML comparison report"),
    "app": ("moa_features.app", "start the channel-comparison Streamlit app"),
    "demo": ("moa_features.demo", "the whole pipeline on the built-in demo screen"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items())
    return (
        "usage: moa-features COMMAND [ARGS...]\n\n"
        f"commands:\n{rows}\n\n"
        "`moa-features COMMAND --help` describes a command's options."
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from moa_features import __version__

        print(f"moa-features {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"moa-features: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
