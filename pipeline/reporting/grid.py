"""A rendered-table-to-be: headers, per-column kinds and digits, rows of cells."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.reporting.specs import Kind

Cell = str | float | None


@dataclass
class Grid:
    """One report table, independent of the output format.

    Attributes:
        name: output file stem (``table1_cityscapes_val_ablation``, ``tune``).
        title: heading of the table in markdown.
        headers, kinds, digits: one per column; ``kind`` is a :data:`~.specs.Kind`.
        rows: cells; a ``number`` cell is a float (non-finite or ``None`` = not available),
            other cells are already strings (``None`` = not available).
        notes: footnotes (e.g. missing files), rendered under the markdown table.
    """

    name: str
    title: str
    headers: list[str]
    kinds: list[Kind]
    digits: list[int]
    rows: list[list[Cell]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not len(self.headers) == len(self.kinds) == len(self.digits):
            raise ValueError("headers, kinds and digits must have one entry per column")

    def add_row(self, cells: list[Cell]) -> None:
        if len(cells) != len(self.headers):
            raise ValueError(f"row of {len(cells)} cells for {len(self.headers)} columns")
        self.rows.append(cells)
