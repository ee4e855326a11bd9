"""A :class:`~.grid.Grid` as markdown, CSV and a LaTeX ``tabular``.

Numbers get their column's decimals in every format. Missing or non-finite numbers are ``–``
in markdown, ``--`` in LaTeX and empty in CSV (so that CSV readers see NaN).
"""

from __future__ import annotations

import csv
import io
import math

from pipeline.reporting.grid import Cell, Grid

MISSING = "–"
_LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                   "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                   "^": r"\textasciicircum{}", "φ": r"$\varphi$", "ρ": r"$\rho$",
                   "✓": r"$\checkmark$", "–": "--", "±": r"$\pm$", "Δ": r"$\Delta$"}


def cell_text(value: Cell, kind: str, digits: int) -> str | None:
    """The text of a cell, ``None`` when not available."""
    if value is None:
        return None
    if kind == "number":
        if isinstance(value, str) or not math.isfinite(value):
            return None
        return f"{value:.{digits}f}"
    return str(value)


def _texts(grid: Grid, missing: str) -> list[list[str]]:
    return [[missing if (text := cell_text(v, k, d)) is None else text
             for v, k, d in zip(row, grid.kinds, grid.digits, strict=True)]
            for row in grid.rows]


def to_markdown(grid: Grid) -> str:
    """A GitHub markdown table (numbers right-aligned), then the notes as a list."""
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", r"\|") for c in cells) + " |"

    rule = ["---:" if k == "number" else (":---:" if k == "flag" else ":---")
            for k in grid.kinds]
    lines = [line(grid.headers), "|" + "|".join(rule) + "|"]
    lines += [line(row) for row in _texts(grid, MISSING)]
    if grid.notes:
        lines.append("")
        lines += [f"- {note}" for note in grid.notes]
    return "\n".join(lines) + "\n"


def to_csv(grid: Grid) -> str:
    """CSV with a header row; missing numbers as empty cells."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(grid.headers)
    writer.writerows(_texts(grid, ""))
    return buffer.getvalue()


def latex_escape(text: str) -> str:
    """Escape LaTeX specials; φ, ρ, ✓, ±, Δ and – become math/ASCII forms (✓ needs
    amssymb)."""
    return "".join(_LATEX_SPECIALS.get(char, char) for char in text)


def to_latex(grid: Grid) -> str:
    """A bare ``tabular`` (``\\hline`` rules, no packages but amssymb for ✓) to ``\\input``."""
    align = "".join("r" if k == "number" else ("c" if k == "flag" else "l") for k in grid.kinds)

    def line(cells: list[str]) -> str:
        return " & ".join(latex_escape(c) for c in cells) + r" \\"

    lines = [rf"\begin{{tabular}}{{{align}}}", r"\hline", line(grid.headers), r"\hline"]
    lines += [line(row) for row in _texts(grid, MISSING)]
    lines += [r"\hline", r"\end{tabular}"]
    return "\n".join(lines) + "\n"
