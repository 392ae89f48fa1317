"""``moa-features``: one command, one subcommand per pipeline stage.

Each subcommand is a ``function(argv) -> int``: the ``main`` of its stage module, so
``moa-features annotate ...`` and ``python -m moa_features.annotate ...`` are the same program,
or, where the CLI chains stages, a function of :mod:`moa_features.pipeline` (``extract`` and
``train`` also write the report). Modules are imported only when their subcommand runs, which
keeps start-up fast (no Keras unless a CNN is trained).
"""

from __future__ import annotations

import sys
from importlib import import_module

# name -> ("module:function", help); the function takes argv and returns the exit status.
COMMANDS = {
    "extract": ("moa_features.pipeline:extract_command", "extract a per-site feature table from images, then report"),
    "annotate": ("moa_features.annotate:main", "map treatments to mechanisms of action"),
    "activity": ("moa_features.activity:main", "phenotypic activity and consistency of treatments (mAP, copairs)"),
    "train": ("moa_features.pipeline:train_command", "train and evaluate MoA models, then report"),
    "predict": ("moa_features.predict:main", "predict MoAs with a trained run"),
    "report": ("moa_features.report:main", "write the HTML comparison report"),
    "app": ("moa_features.app:main", "start the channel-comparison Streamlit app"),
    "demo": ("moa_features.demo:main", "the whole pipeline on the built-in demo screen"),
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
    from moa_features.io import format_warnings

    format_warnings(name)
    module, function = COMMANDS[name][0].split(":")
    return int(getattr(import_module(module), function)(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
