"""Report tables: specs cover the paper's keys, cells per kind, markdown/CSV/LaTeX output."""

from __future__ import annotations

import csv
import io

import pytest

from dgmn.paper import paper_rows
from pipeline.reporting.grid import Grid
from pipeline.reporting.render import latex_escape, to_csv, to_latex, to_markdown
from pipeline.reporting.specs import TABLE_SPECS, Column
from pipeline.reporting.tables import build_table, column_cell


@pytest.mark.parametrize("table", sorted(TABLE_SPECS))
def test_every_paper_column_of_a_spec_exists_in_the_paper_table(table: str) -> None:
    keys = set().union(*(row.keys() for row in paper_rows(table)))
    spec = TABLE_SPECS[table]
    assert {c.key for c in spec.columns if c.source == "paper"} <= keys
    assert len({c.header for c in spec.columns}) == len(spec.columns)
    assert spec.curves and spec.ours_keys


def _grid() -> Grid:
    grid = Grid("t", "T", ["model", "φ", "DS", "AP (ours)"], ["text", "rates", "flag", "number"],
                [0, 0, 0, 2])
    grid.add_row(["a_b & c", "{1,6}", "✓", 41.2345])
    grid.add_row(["d|e", None, "", float("nan")])
    grid.add_row(["f", "{1}", "", None])
    grid.notes.append("f: missing")
    return grid


def test_markdown_dashes_missing_and_non_finite_numbers() -> None:
    lines = to_markdown(_grid()).splitlines()
    assert lines[0] == "| model | φ | DS | AP (ours) |"
    assert lines[1] == "|:---|:---|:---:|---:|"
    assert lines[2] == "| a_b & c | {1,6} | ✓ | 41.23 |"
    assert lines[3] == r"| d\|e | – |  | – |"
    assert lines[-1] == "- f: missing"


def test_csv_round_trips_with_empty_missing_cells() -> None:
    rows = list(csv.reader(io.StringIO(to_csv(_grid()))))
    assert rows == [["model", "φ", "DS", "AP (ours)"], ["a_b & c", "{1,6}", "✓", "41.23"],
                    ["d|e", "", "", ""], ["f", "{1}", "", ""]]


def test_latex_tabular_escapes_specials() -> None:
    tex = to_latex(_grid()).splitlines()
    assert tex[0] == r"\begin{tabular}{llcr}"
    assert tex[2] == r"model & $\varphi$ & DS & AP (ours) \\"
    assert tex[4] == r"a\_b \& c & \{1,6\} & $\checkmark$ & 41.23 \\"
    assert tex[5] == r"d|e & -- &  & -- \\"
    assert tex[-1] == r"\end{tabular}"
    assert latex_escape("50% #1 ~^\\") == r"50\% \#1 \textasciitilde{}\textasciicircum{}" \
        r"\textbackslash{}"


def test_cells_by_kind_and_a_row_without_experiment_is_kept() -> None:
    paper = {"rates": [1, 6], "ds": True, "groups": 0, "miou": 80.4, "model": "dgmn"}
    assert column_cell(Column("φ", "paper", "rates", kind="rates"), None, paper) == "{1,6}"
    assert column_cell(Column("DS", "paper", "ds", kind="flag"), None, paper) == "✓"
    assert column_cell(Column("G", "paper", "groups", kind="text"), None, paper) == "0"
    assert column_cell(Column("m", "ours", "miou"), {"miou": "x"}, paper) is None
    spec = TABLE_SPECS["table6_cityscapes_val_rates"]
    grid, rows = build_table(spec, [paper], {}, {}, {})
    assert grid.rows[0][:2] == ["dgmn", "no experiment"] and rows[0].status == "no_experiment"
    assert rows[0].non_finite == ["miou"]
    with pytest.raises(ValueError, match="cells"):
        grid.add_row(["too", "short"])
