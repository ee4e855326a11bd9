"""The paper's reported figures (transcribed from Zhang et al., CVPR 2020), kept as data."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml


@cache
def paper_tables() -> dict[str, Any]:
    """All tables of ``tables.yaml``: ``{table_name: {"rows": [...], ...}, "conventions": ...}``."""
    text = resources.files(__package__).joinpath("tables.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def paper_rows(table: str) -> list[dict[str, Any]]:
    """Rows of one table, e.g. ``paper_rows("table1_cityscapes_val_ablation")``."""
    tables = paper_tables()
    if table not in tables or "rows" not in tables[table]:
        known = ", ".join(name for name, value in tables.items() if "rows" in value)
        raise ValueError(f"unknown paper table {table!r}; known: {known}")
    return tables[table]["rows"]
