"""One paper table with our numbers beside the paper's: rows in paper order, cells per spec."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pipeline.reporting.experiments import ExperimentRef
from pipeline.reporting.grid import Cell, Grid
from pipeline.reporting.runs import as_number, is_finite
from pipeline.reporting.specs import Column, TableSpec

Status = Literal["ok", "missing", "no_experiment"]


@dataclass
class RowResult:
    """One paper row and what we have for it (also its ``summary.json`` entry).

    Attributes:
        row: index in the paper's table.
        label: the experiment's label (the paper's model name when no experiment exists).
        experiment, trained_as: the experiment of this row and the run it reads.
        status: ``ok``; ``missing`` (no ``metrics.json``); ``no_experiment`` (no config).
        metrics_file: where our numbers come from (or were expected).
        ours: the spec's ``metrics.json`` values (``None`` when absent, NaN kept).
        paper: the paper's row as transcribed.
    """

    row: int
    label: str
    experiment: str | None
    trained_as: str | None
    status: Status
    metrics_file: str | None
    ours: dict[str, float | None] = field(default_factory=dict)
    paper: dict[str, Any] = field(default_factory=dict)

    @property
    def non_finite(self) -> list[str]:
        """Keys of ``ours`` that are absent, NaN or infinite."""
        return [key for key, value in self.ours.items() if not is_finite(value)]


def paper_label(paper_row: Mapping[str, Any]) -> str:
    """A label from the paper row itself (model, and backbone when the table has one)."""
    model = str(paper_row.get("model", "?"))
    return f"{model} ({paper_row['backbone']})" if "backbone" in paper_row else model


def format_rates(rates: Sequence[int] | None) -> str | None:
    return None if rates is None else "{" + ",".join(str(r) for r in rates) + "}"


def column_cell(column: Column, ours: Mapping[str, Any] | None,
                paper: Mapping[str, Any]) -> Cell:
    """The cell of ``column`` for one row (``ours`` is ``None`` when the run is missing)."""
    if column.source == "ours":
        return None if ours is None else as_number(ours.get(column.key))
    value = paper.get(column.key)
    if column.kind == "number":
        return as_number(value)
    if column.kind == "rates":
        return format_rates(value)
    if column.kind == "flag":
        return "✓" if value else ""
    return None if value is None else str(value)


def build_table(spec: TableSpec, paper_rows: Sequence[Mapping[str, Any]],
                experiments: Mapping[int, ExperimentRef],
                metrics: Mapping[str, Mapping[str, Any] | None],
                metrics_file: Mapping[str, Path]) -> tuple[Grid, list[RowResult]]:
    """The grid and row results of one table.

    Args:
        paper_rows: the paper's rows, in order (``dgmn.paper.paper_rows``).
        experiments: ``{row: experiment}`` of this table.
        metrics: ``{trained_as: metrics.json content or None when missing}``.
        metrics_file: ``{trained_as: its metrics.json path}`` (for notes and the summary).
    """
    grid = Grid(spec.table, spec.title, ["model", "run", *(c.header for c in spec.columns)],
                ["text", "text", *(c.kind for c in spec.columns)],
                [0, 0, *(c.digits for c in spec.columns)])
    results = []
    for index, paper in enumerate(paper_rows):
        ref = experiments.get(index)
        ours = metrics.get(ref.trained_as) if ref else None
        if ref is None:
            status: Status = "no_experiment"
            run = "no experiment"
        elif ours is None:
            status, run = "missing", f"missing ({ref.trained_as})"
            grid.notes.append(f"no evaluation results for row {index} ({ref.label}): "
                              f"{metrics_file[ref.trained_as]} not found")
        else:
            status, run = "ok", ref.trained_as
        label = ref.label if ref else paper_label(paper)
        grid.add_row([label, run, *(column_cell(c, ours, paper) for c in spec.columns)])
        results.append(RowResult(
            row=index, label=label, experiment=ref.name if ref else None,
            trained_as=ref.trained_as if ref else None, status=status,
            metrics_file=str(metrics_file[ref.trained_as]) if ref else None,
            ours={k: as_number((ours or {}).get(k)) for k in spec.ours_keys},
            paper=dict(paper)))
    return grid, results
