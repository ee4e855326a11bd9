"""The Ray Tune sweep over φ and G (``runs/<profile>/tune/results.json``) as a report table,
with the paper's figure for the same φ and G where the paper reports one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dgmn.paper import paper_rows
from pipeline.reporting.grid import Grid
from pipeline.reporting.runs import as_number
from pipeline.reporting.specs import metric_name
from pipeline.reporting.tables import format_rates


@dataclass(frozen=True)
class PaperLookup:
    """Where the paper reports a sweep metric: a table, its key, the rows that qualify
    (``where``) and, when the paper fixed G for that table, that G."""

    table: str
    key: str
    where: tuple[tuple[str, Any], ...]
    fixed_groups: int | None = None


#: Sweep metric → paper figure (Table 6 trains G=4; Table 7 lists G per row).
TUNE_PAPER: dict[str, PaperLookup] = {
    "miou": PaperLookup("table6_cityscapes_val_rates", "miou",
                        (("da", True), ("dw", True), ("ds", True)), fixed_groups=4),
    "bbox_AP": PaperLookup("table7_coco_val_rates_groups", "ap_box",
                           (("da", True), ("dw", True), ("ds", True))),
}


def paper_value(metric: str, rates: Sequence[int], groups: int) -> float | None:
    """The paper's ``metric`` for a DA+DW+DS module with these φ and G, if it reports one."""
    lookup = TUNE_PAPER.get(metric)
    if lookup is None:
        return None
    for row in paper_rows(lookup.table):
        if any(row.get(key) != value for key, value in lookup.where):
            continue
        row_groups = lookup.fixed_groups if lookup.fixed_groups is not None else row.get("groups")
        if list(row.get("rates") or []) == list(rates) and row_groups == groups:
            return as_number(row.get(lookup.key))
    return None


def tune_table(results: Sequence[Mapping[str, Any]]) -> Grid:
    """One row per trial: φ, G, the metric (ours and paper), params, GMACs, iterations, error."""
    metric = str(results[0].get("metric", "metric")) if results else "metric"
    name = metric_name(metric)
    grid = Grid("tune", f"Ray Tune sweep over φ and G ({name})",
                ["trial", "φ", "G", f"{name} (ours)", f"{name} (paper)", "params M",
                 "GMACs", "iterations", "error"],
                ["text", "rates", "text", "number", "number", "number", "number", "text",
                 "text"],
                [0, 0, 0, 2, 1, 2, 2, 0, 0])
    for row in results:
        rates, groups = list(row.get("rates") or []), row.get("groups")
        iterations = row.get("iterations")
        grid.add_row([str(row.get("trial", "")), format_rates(rates), str(groups),
                      as_number(row.get("value")),
                      paper_value(metric, rates, groups) if isinstance(groups, int) else None,
                      as_number(row.get("params_m")), as_number(row.get("gmacs")),
                      None if iterations is None else str(iterations),
                      " ".join(str(row["error"]).split())[:120] if row.get("error") else ""])
    return grid
