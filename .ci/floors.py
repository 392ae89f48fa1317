"""Print the declared dependency floors of setup.cfg as exact pins, for the minimum-versions job.

Every requirement in ``install_requires`` and in the extras asked for must declare its floor as
``>=X``; this prints ``name==X`` (environment markers kept, extras dropped, as pip's
constraint files require), so the job installs exactly the floors and they never drift from
setup.cfg. Usage (``.ci/run`` and ``tox -e floors``)::

    python .ci/floors.py --extras all,test -o floors.txt
    pip install -c floors.txt -e ".[all,test]"

Standard library only: it runs before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import configparser
import re
import sys
from pathlib import Path

SETUP_CFG = Path(__file__).resolve().parents[1] / "setup.cfg"
# name[extras] >=floor [,<cap]... [; marker]
REQUIREMENT = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*"
    r"(?P<spec>[^;]*?)\s*(?:;\s*(?P<marker>.+))?$"
)
FLOOR = re.compile(r"(?:^|,)\s*>=\s*(?P<version>[^,\s]+)")


def requirement_lines(cfg: configparser.ConfigParser, extras: list[str]) -> list[str]:
    """The requirement lines of ``install_requires`` and of each extra in ``extras``, in order."""
    lines = cfg.get("options", "install_requires").splitlines()
    for extra in extras:
        if not cfg.has_option("options.extras_require", extra):
            known = ", ".join(cfg.options("options.extras_require"))
            raise SystemExit(f"{SETUP_CFG}: no extra {extra!r} in [options.extras_require] (known: {known})")
        lines += cfg.get("options.extras_require", extra).splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def pin(line: str) -> str:
    """``name[extra]>=X,<Y ; marker`` -> ``name==X ; marker``; error if ``line`` has no ``>=`` floor."""
    match = REQUIREMENT.match(line)
    floor = FLOOR.search(match.group("spec")) if match else None
    if floor is None:
        raise SystemExit(f"{SETUP_CFG}: requirement {line!r} declares no floor: write it as 'name>=X'")
    marker = match.group("marker")
    return f"{match.group('name')}=={floor.group('version')}" + (f" ; {marker.strip()}" if marker else "")


def floors(extras: list[str], cfg_path: Path = SETUP_CFG) -> list[str]:
    """The exact pins of every floor, each distribution (and marker) once, in setup.cfg's order."""
    cfg = configparser.ConfigParser()
    cfg.read(cfg_path)
    return list(dict.fromkeys(pin(line) for line in requirement_lines(cfg, extras)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extras", default="", help="comma-separated extras to include, e.g. all,test")
    parser.add_argument("-o", "--output", type=Path, help="write the pins to this file (default: standard output)")
    args = parser.parse_args(argv)
    extras = [e.strip() for e in args.extras.split(",") if e.strip()]
    text = "".join(f"{line}\n" for line in floors(extras))
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
