"""Assemble a self-contained HTML report: sections of text, tables and embedded PNG figures.

The page has no external resources (CSS inline, figures as ``data:image/png;base64`` URIs), so
it opens offline and can be mailed as one file. Each figure is also saved as a PNG in a folder
beside the page (``NAME_files/``) for slides and papers.
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import matplotlib
from markupsafe import Markup
from matplotlib.figure import Figure

from moa_features import __version__
from moa_features.io import atomic_path
from moa_features.reports.plots import STYLE

TEMPLATES = Path(__file__).resolve().parent / "templates"
FIGURE_DPI = 110


@dataclass
class ReportFigure:
    """One figure: ``name`` (file-name slug), ``title`` and ``caption`` (text), ``png`` (bytes)."""

    name: str
    title: str
    png: bytes
    caption: str = ""

    @property
    def data_uri(self) -> str:
        """The PNG as a ``data:`` URI, for ``<img src=...>``."""
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


@dataclass
class Table:
    """A small table: header ``columns`` and ``rows`` of cells (str, numbers or :class:`Markup`)."""

    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    caption: str = ""
    numeric: Sequence[bool] = ()

    def __post_init__(self) -> None:
        width = len(self.columns)
        bad = [i for i, r in enumerate(self.rows) if len(r) != width]
        if bad:
            raise ValueError(f"table {self.caption!r}: row(s) {bad[:5]} do not have {width} cells")
        if not self.numeric:
            self.numeric = [
                bool(self.rows) and all(isinstance(r[j], (int, float)) or _looks_numeric(r[j]) for r in self.rows)
                for j in range(width)
            ]


@dataclass
class Section:
    """One report section: ``lead`` is the one sentence saying what to look for.

    ``blocks`` are rendered in order: :class:`ReportFigure`, :class:`Table` or a note (str).
    """

    id: str
    title: str
    lead: str
    blocks: list[Any] = field(default_factory=list)

    def add(self, block: Any) -> Any:
        """Append a figure, table or note; returns it."""
        self.blocks.append(block)
        return block

    @property
    def figures(self) -> list[ReportFigure]:
        return [b for b in self.blocks if isinstance(b, ReportFigure)]


def slug(text: str) -> str:
    """A file-name-safe lower-case slug: ``"Per-class recall (site)"`` -> ``per-class-recall-site``."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s or "figure"


def figure_png(fig: Figure, dpi: int = FIGURE_DPI) -> bytes:
    """Render ``fig`` as PNG bytes (white background, the report's :data:`~moa_features.reports.plots.STYLE`).

    Figures from :mod:`moa_features.reports.plots` are not registered with pyplot: once the
    caller drops them they are garbage-collected, nothing needs closing.
    """
    buf = io.BytesIO()
    with matplotlib.rc_context(STYLE):
        fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()


def render_html(
    title: str,
    sections: Sequence[Section],
    subtitle: str = "",
    generated: str | None = None,
    record: Mapping[str, Any] | None = None,
) -> str:
    """Render the page from ``templates/report.html.j2`` (autoescaped; :class:`Markup` passes).

    ``record``: what the page shows (``{"table", "run"}``), kept in a ``<meta>`` tag so a later
    report can tell whose page it would replace (:mod:`moa_features.reports.checks`).
    """
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.tests["figure"] = lambda b: isinstance(b, ReportFigure)
    env.tests["table"] = lambda b: isinstance(b, Table)
    env.filters["cell"] = format_cell
    generated = generated or datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return env.get_template("report.html.j2").render(
        title=title,
        subtitle=subtitle,
        sections=sections,
        generated=generated,
        version=__version__,
        record=json.dumps(dict(record or {}), sort_keys=True),
    )


def write_report(html: str, sections: Sequence[Section], output: str | Path) -> Path:
    """Write the page to ``output`` and every figure as ``<output stem>_files/<nn>-<name>.png``.

    Both are written atomically (with a new file's usual permissions); returns ``output``.
    """
    output = Path(output)
    files = output.with_name(f"{output.stem}_files")
    files.mkdir(parents=True, exist_ok=True)
    n = 0
    for section in sections:
        for fig in section.figures:
            n += 1
            with atomic_path(files / f"{n:02d}-{fig.name}.png") as tmp:
                tmp.write_bytes(fig.png)
    with atomic_path(output) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return output


def format_cell(value: Any) -> Any:
    """Cell text: floats with 3 significant decimals, ints with thousands separators."""
    if isinstance(value, Markup):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:
            return "—"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}" if abs(value) < 0.01 else f"{value:.3f}"
    return "" if value is None else str(value)


def key_value_rows(mapping: Mapping[str, Any], prefix: str = "") -> list[list[Any]]:
    """Flatten a nested mapping into ``[key path, value]`` rows (``"timings.extract"``)."""
    rows: list[list[Any]] = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            rows.extend(key_value_rows(value, prefix=f"{name}."))
        elif isinstance(value, (list, tuple)):
            rows.append([name, ", ".join(str(v) for v in value)])
        else:
            rows.append([name, value])
    return rows


def _looks_numeric(cell: Any) -> bool:
    return isinstance(cell, str) and bool(re.fullmatch(r"[-+]?[\d,.]+(\s*±\s*[\d.]+)?%?", cell.strip()))
