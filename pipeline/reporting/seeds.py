"""The seed-statistics table of a paper table, from each seed's ``scores.json``.

Per paper row: the seeds scored, the headline score (mIoU or box AP) and the context classes'
score as mean ± sample standard deviation over them, and each score's difference to the
table's baseline row paired by seed, with its t-interval and verdict (:mod:`.statistics`).
A row with some or all seeds missing keeps its place: its status says so and a note names the
absent files.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from pipeline.common.errors import StageError
from pipeline.reporting.grid import Cell, Grid
from pipeline.reporting.runs import RunLayout, as_number, read_json
from pipeline.reporting.specs import TableSpec, metric_name
from pipeline.reporting.statistics import (
    LEVEL,
    PairedDifference,
    Summary,
    paired_difference,
    summarize,
)
from pipeline.reporting.tables import RowResult

#: Decimals of every number in the table (a spread of a few tenths needs two).
DIGITS = 2
SUFFIX = "_seeds"
BASELINE = "baseline"
SeedStatus = Literal["ok", "partial", "missing", "no_experiment"]
#: ``{seed: that run's scores.json}`` of one experiment (only the seeds with a file).
SeedScores = Mapping[int, Mapping[str, Any]]


def read_seed_scores(layout: RunLayout, trained_as: str, seeds: Sequence[int]
                     ) -> dict[int, dict[str, Any]]:
    """The ``scores.json`` of each of ``seeds`` that has one (absent seeds are left out)."""
    found = {}
    for seed in seeds:
        path = layout.seed_scores(trained_as, seed)
        if path.is_file():
            data = read_json(path)
            if not isinstance(data, dict):
                raise StageError(f"{path}: expected a JSON object of scores, got "
                                 f"{type(data).__name__}")
            found[seed] = data
    return found


def by_seed(scores: SeedScores, key: str) -> dict[int, float]:
    """``{seed: value}`` of the seeds whose scores hold a number under ``key``."""
    return {seed: value for seed, data in sorted(scores.items())
            if (value := as_number(data.get(key))) is not None}


@dataclass(frozen=True)
class SeedRow:
    """One paper row over seeds (also its ``summary.json`` entry, ``over_seeds``).

    Attributes:
        row, label, trained_as: as in :class:`~.tables.RowResult`.
        status: ``ok`` (every seed scored), ``partial``, ``missing`` (none) or
            ``no_experiment``.
        seeds, missing: the seeds with and without a ``scores.json``.
        headline, context: ``{seed: score}`` (``context`` is empty when not scored).
        is_baseline: this is the table's baseline row.
        delta, context_delta: the paired differences to the baseline row (``None`` for the
            baseline itself, a row without experiment, and ``context_delta`` of a row without
            context score).
    """

    row: int
    label: str
    trained_as: str | None
    status: SeedStatus
    seeds: tuple[int, ...]
    missing: tuple[int, ...]
    headline: dict[int, float]
    context: dict[int, float]
    is_baseline: bool
    delta: PairedDifference | None
    context_delta: PairedDifference | None

    @property
    def headline_summary(self) -> Summary:
        return summarize(list(self.headline.values()))

    @property
    def context_summary(self) -> Summary | None:
        return summarize(list(self.context.values())) if self.context else None


@dataclass(frozen=True)
class SeedTable:
    """The seed statistics of one paper table: its keys, its baseline and its rows."""

    spec: TableSpec
    seeds: tuple[int, ...]
    baseline_label: str | None
    rows: list[SeedRow]

    @property
    def name(self) -> str:
        return f"{self.spec.table}{SUFFIX}"


def _number(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def mean_std_text(summary: Summary | None) -> str | None:
    """``mean ± std`` (the mean alone from one seed); ``None`` when there is no finite mean."""
    if summary is None or not _number(summary.mean):
        return None
    if summary.std is None:
        return f"{summary.mean:.{DIGITS}f}"
    return f"{summary.mean:.{DIGITS}f} ± {summary.std:.{DIGITS}f}"


def delta_text(delta: PairedDifference | None) -> str | None:
    """``+mean [+low, +high]`` (the mean alone without an interval); ``None`` without one."""
    if delta is None or not _number(delta.mean):
        return None
    if delta.low is None or delta.high is None:
        return f"{delta.mean:+.{DIGITS}f}"
    return f"{delta.mean:+.{DIGITS}f} [{delta.low:+.{DIGITS}f}, {delta.high:+.{DIGITS}f}]"


def _verdict_text(row: SeedRow, delta: PairedDifference | None) -> str | None:
    if row.is_baseline and row.status != "no_experiment":
        return BASELINE
    return None if delta is None else delta.verdict


def _short_title(spec: TableSpec) -> str:
    """``Table 1`` of ``Table 1: ablation …``."""
    return spec.title.split(":", 1)[0]


def _display(key: str) -> str:
    return metric_name(key).removesuffix(" %")


def seed_rows(spec: TableSpec, rows: Sequence[RowResult], scores: Mapping[str, SeedScores],
              seeds: Sequence[int]) -> list[SeedRow]:
    """The :class:`SeedRow` of every row of one table.

    Args:
        rows: the table's rows (:func:`~.tables.build_table`), in paper order.
        scores: ``{trained_as: its seed scores}`` (:func:`read_seed_scores`).
        seeds: the seeds every run should have.
    """
    baseline = rows[spec.baseline_row] if spec.baseline_row < len(rows) else None
    reference = scores.get(baseline.trained_as, {}) if baseline and baseline.trained_as else {}
    base_headline, base_context = by_seed(reference, spec.headline), by_seed(reference,
                                                                               spec.context)
    out = []
    for row in rows:
        is_baseline = baseline is not None and row.row == baseline.row
        if row.trained_as is None:
            out.append(SeedRow(row.row, row.label, None, "no_experiment", (), (), {}, {},
                               is_baseline, None, None))
            continue
        found = scores.get(row.trained_as, {})
        headline, context = by_seed(found, spec.headline), by_seed(found, spec.context)
        missing = tuple(s for s in seeds if s not in found)
        status: SeedStatus = ("missing" if not found else "partial" if missing else "ok")
        compare = not is_baseline
        out.append(SeedRow(
            row.row, row.label, row.trained_as, status, tuple(sorted(found)), missing,
            headline, context, is_baseline,
            paired_difference(headline, base_headline) if compare else None,
            paired_difference(context, base_context) if compare and context else None))
    return out


def build_seed_table(spec: TableSpec, rows: Sequence[RowResult],
                     scores: Mapping[str, SeedScores], seeds: Sequence[int],
                     shown: Callable[[str, int], Path | str]) -> tuple[Grid, SeedTable]:
    """The seed-statistics grid of one table and its rows.

    Args:
        rows, scores, seeds: as in :func:`seed_rows`.
        shown: ``(trained_as, seed) -> the path of its scores.json`` as notes name it.
    """
    baseline = rows[spec.baseline_row] if spec.baseline_row < len(rows) else None
    table = SeedTable(spec, tuple(seeds), baseline.label if baseline else None,
                      seed_rows(spec, rows, scores, seeds))
    headline, context, level = _display(spec.headline), _display(spec.context), f"{LEVEL:.0%}"
    versus = f"{table.baseline_label} (row {spec.baseline_row})" if baseline else "–"
    grid = Grid(
        table.name,
        f"{_short_title(spec)} over seeds: mean ± std, and the difference to {versus} paired "
        f"by seed with its {level} interval",
        ["model", "run", "seeds", f"{headline} mean ± std", f"{context} mean ± std",
         f"Δ {headline} [{level} CI]", "verdict", f"Δ {context} [{level} CI]",
         "verdict (context)"],
        ["text"] * 9, [0] * 9)
    grid.notes.append(
        f"Δ: the row's score minus {versus}'s, seed by seed over the seeds both have; "
        f"[low, high]: the {level} t-interval of the mean difference (n − 1 degrees of "
        "freedom). A row is better or worse only when the interval excludes 0; a comparison "
        "from one seed names no winner.")
    for row in table.rows:
        if row.status == "no_experiment":
            run, count = "no experiment", None
        else:
            run = f"missing ({row.trained_as})" if row.status == "missing" else row.trained_as
            count = (f"{len(row.seeds)}" if not row.missing
                     else f"{len(row.seeds)} of {len(row.seeds) + len(row.missing)}")
        if row.missing and row.trained_as is not None:
            files = ", ".join(str(shown(row.trained_as, s)) for s in row.missing)
            grid.notes.append(f"row {row.row} ({row.label}): no scores for seed"
                              f"{'s' if len(row.missing) > 1 else ''} "
                              f"{', '.join(map(str, row.missing))} ({files} not found)")
        cells: list[Cell] = [
            row.label, run, count, mean_std_text(row.headline_summary),
            mean_std_text(row.context_summary), delta_text(row.delta),
            _verdict_text(row, row.delta), delta_text(row.context_delta),
            _verdict_text(row, row.context_delta) if row.context else None]
        grid.add_row(cells)
    return grid, table


def _summary(key: str, values: Mapping[int, float]) -> dict[str, Any]:
    return {"key": key, "by_seed": {str(s): v for s, v in values.items()},
            **asdict(summarize(list(values.values())))}


def seed_row_summary(table: SeedTable, row: SeedRow) -> dict[str, Any]:
    """A row's ``over_seeds`` entry of ``summary.json`` (non-finite numbers still as floats)."""
    spec = table.spec
    return {
        "status": row.status, "seeds": list(row.seeds), "missing_seeds": list(row.missing),
        "headline": _summary(spec.headline, row.headline),
        "context": _summary(spec.context, row.context) if row.context else None,
        "vs_baseline": None if row.delta is None else {
            "baseline_row": spec.baseline_row, "level": LEVEL,
            "headline": asdict(row.delta),
            "context": None if row.context_delta is None else asdict(row.context_delta)}}
