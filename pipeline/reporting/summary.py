"""``summary.json``: every reported row with our values, for machines (CI smoke checks).

Strict JSON: a NaN or infinite value is written as ``null`` and its key listed in the row's
``non_finite``; ``finite`` is true when the row was evaluated and all its values are finite;
the top-level ``all_finite`` holds for every row of every table. With seed statistics, each
row also has ``over_seeds`` (:func:`~.seeds.seed_row_summary`) and each table says what they
compare (``over_seeds``: seeds, scores, baseline row, interval level).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.reporting.seeds import SeedTable, seed_row_summary
from pipeline.reporting.statistics import LEVEL
from pipeline.reporting.tables import RowResult


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as ``None`` (recursively)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def row_summary(row: RowResult) -> dict[str, Any]:
    return {"row": row.row, "label": row.label, "experiment": row.experiment,
            "trained_as": row.trained_as, "status": row.status,
            "metrics_file": row.metrics_file, "ours": json_safe(row.ours),
            "paper": json_safe(row.paper), "non_finite": row.non_finite,
            "finite": row.status == "ok" and not row.non_finite}


def seed_table_summary(table: SeedTable) -> dict[str, Any]:
    """What a table's ``over_seeds`` entries compare."""
    spec = table.spec
    return {"seeds": list(table.seeds), "headline": spec.headline, "context": spec.context,
            "baseline_row": spec.baseline_row, "baseline": table.baseline_label,
            "level": LEVEL}


def build_summary(profile: str, tables: Mapping[str, tuple[str, Sequence[RowResult]]],
                  tune: Sequence[Mapping[str, Any]] | None, plots: Sequence[str],
                  over_seeds: Mapping[str, SeedTable] | None = None) -> dict[str, Any]:
    """``tables`` maps a table name to ``(title, rows)``; ``plots`` are paths under the
    report directory; ``over_seeds`` maps a table name to its seed statistics."""
    out: dict[str, Any] = {"profile": profile, "tables": {}, "plots": list(plots)}
    finite = True
    for name, (title, rows) in tables.items():
        summaries = [row_summary(r) for r in rows]
        evaluated = [s for s in summaries if s["status"] != "no_experiment"]
        finite = finite and all(s["finite"] for s in evaluated)
        out["tables"][name] = {"title": title, "rows": summaries}
        seeds = (over_seeds or {}).get(name)
        if seeds is not None:
            by_row = {r.row: r for r in seeds.rows}
            for summary in summaries:
                seed_row = by_row.get(summary["row"])
                summary["over_seeds"] = (None if seed_row is None else
                                         json_safe(seed_row_summary(seeds, seed_row)))
            out["tables"][name]["over_seeds"] = seed_table_summary(seeds)
    out["all_finite"] = finite
    out["tune"] = None if tune is None else json_safe(list(tune))
    return out
