"""Stage ``report``: our results beside the paper's — tables, plots, a README section.

Usage::

    python -m pipeline.report [profile=default] [key=value ...] [--tables t1,t2]
                              [--allow-missing] [--update-readme [README.md]]

Reads, for profile P and each seed k of ``seeds``, ``runs/P/metrics/<experiment>.json`` (the
scores, mean over the seeds), ``runs/P/eval/<experiment>/seed<k>/scores.json`` (each seed's
scores) and ``{qualitative.npz,walks.npz}`` (the first seed's; evaluate stage),
``runs/P/train/<experiment>/seed<k>/history.json`` (train stage) and
``runs/P/tune/results.json`` (tune stage, optional), and writes ``reports/P/`` atomically:

- ``<table>.{md,csv,tex}`` per paper table, one row per paper row in the paper's order, our
  numbers beside the paper's (``–`` where one is missing), ``<table>_seeds.{md,csv,tex}``
  (per row: mean ± std over the seeds of the headline and the context classes' score, and
  the difference to the table's baseline row paired by seed, with its 95% t-interval and
  verdict: :mod:`pipeline.reporting.statistics`), and ``tune.{md,csv,tex}``;
- ``plots/curves_<table>.png`` (training loss and validation curves, mean over the seeds,
  Fig. 5), ``plots/sampling_<exp>.png`` (sampled nodes of a receiving pixel, Fig. 4),
  ``plots/qualitative_<exp>.png``;
- ``README_results.md`` (the section ``--update-readme`` puts between the README's
  ``<!-- results:start -->`` / ``<!-- results:end -->`` markers) and ``summary.json``.

Tables: ``--tables``, else ``report.tables`` (``conf/report/<profile>.yaml``), else Tables 1, 2,
6, 7 (and 4 when one of its own, non-alias runs was evaluated). A missing metrics file of
a selected table is an error naming the file(s), unless ``--allow-missing`` (then the row
shows ``missing`` — but a table without any evaluated run is still an error). A seed's
missing ``scores.json`` is never an error: the seed table's row says how many seeds it has and
a note names the absent files.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dgmn.paper import paper_rows
from pipeline.common.cli import Flag, parse_stage_args
from pipeline.common.errors import StageError, run_stage
from pipeline.common.fs import atomic_directory, atomic_write_json, atomic_write_text
from pipeline.config import load_config
from pipeline.config.compose import PROJECT_ROOT
from pipeline.layout import RUNS, Layout, reports_dir
from pipeline.reporting import plots
from pipeline.reporting.experiments import ExperimentRef, experiment_index, row_experiments
from pipeline.reporting.grid import Grid
from pipeline.reporting.readme import Block, results_section, split_readme, update_readme
from pipeline.reporting.render import to_csv, to_latex, to_markdown
from pipeline.reporting.runs import MissingRunError, RunLayout, read_json
from pipeline.reporting.seeds import SeedTable, build_seed_table, read_seed_scores
from pipeline.reporting.specs import DEFAULT_TABLES, OPTIONAL_TABLES, TABLE_SPECS
from pipeline.reporting.summary import build_summary
from pipeline.reporting.tables import RowResult, build_table
from pipeline.reporting.tune import tune_table

SHOWN = 8  # missing files named in one error message
SYNTHETIC_NOTE = ("Profile `{profile}` trains small models on synthetic data for minutes: "
                  "its numbers check the pipeline end to end, they are not comparable to the "
                  "paper's. ")
INTRO = ("Our numbers (from `{runs}`) beside the paper's (Zhang et al., CVPR 2020, transcribed "
         "in `dgmn/paper/tables.yaml`); `–`: not reported or not available. +GFLOPs in the "
         "paper's convention (convolution multiply-accumulates only).")


def _shown(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` when inside it (stable messages), else absolute."""
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return str(path)


def select_tables(tables: Sequence[str] | None, index: Sequence[ExperimentRef],
                  layout: RunLayout) -> list[str]:
    """The tables to report: ``tables`` (checked), else the defaults plus every optional
    table with at least one evaluated run of its own (an alias's run belongs to its table)."""
    if tables:
        unknown = [t for t in tables if t not in TABLE_SPECS]
        if unknown:
            raise StageError(f"report tables {unknown}: unknown; known: {sorted(TABLE_SPECS)}")
        return list(dict.fromkeys(tables))
    extra = [t for t in OPTIONAL_TABLES
             if any(r.table == t and r.trained_as == r.name
                    and layout.metrics(r.name).is_file() for r in index)]
    return [*DEFAULT_TABLES, *extra]


def check_runs(tables: Sequence[str], experiments: dict[str, dict[int, ExperimentRef]],
               layout: RunLayout, allow_missing: bool, base: Path) -> None:
    """Fail naming every absent metrics file (or, with ``allow_missing``, every table
    without a single evaluated run)."""
    missing: dict[str, list[str]] = {}
    empty = []
    for table in tables:
        refs = experiments[table].values()
        absent = [r for r in refs if not layout.metrics(r.trained_as).is_file()]
        for ref in absent:
            missing.setdefault(_shown(layout.metrics(ref.trained_as), base), []).append(
                f"{table} row {ref.row}")
        if refs and len(absent) == len(refs):
            empty.append(table)
    hint = "run the evaluate stage for them"
    if missing and not allow_missing:
        listed = [f"{path} ({', '.join(rows)})" for path, rows in missing.items()]
        more = f"; … and {len(listed) - SHOWN} more" if len(listed) > SHOWN else ""
        raise MissingRunError(f"report for profile {layout.profile!r}: {len(listed)} missing "
                              f"evaluation results: {'; '.join(listed[:SHOWN])}{more} — "
                              f"{hint}, or pass --allow-missing")
    if empty:
        raise MissingRunError(f"report for profile {layout.profile!r}: no evaluated run at all "
                              f"for {empty} (e.g. {next(iter(missing))} is missing) — {hint} "
                              "or leave these tables out")


def _write_grid(grid: Grid, directory: Path) -> None:
    atomic_write_text(directory / f"{grid.name}.md", f"**{grid.title}**\n\n{to_markdown(grid)}")
    atomic_write_text(directory / f"{grid.name}.csv", to_csv(grid))
    atomic_write_text(directory / f"{grid.name}.tex", to_latex(grid))


def _evaluated(rows: Sequence[RowResult]) -> dict[str, str]:
    """``{trained_as: label}`` of the evaluated rows, first label wins."""
    found: dict[str, str] = {}
    for row in rows:
        if row.status == "ok" and row.trained_as is not None:
            found.setdefault(row.trained_as, row.label)
    return found


def run(profile: str, tables: Sequence[str] | None = None, runs_dir: Path | None = None,
        out_dir: Path | None = None, *, seeds: Sequence[int] | None = None,
        allow_missing: bool = False, link_root: Path = PROJECT_ROOT) -> Path:
    """Build the report of ``profile`` from ``runs_dir/<profile>`` into ``out_dir``.

    Args:
        tables: paper tables (``table1_cityscapes_val_ablation`` …); ``None``: the defaults.
        runs_dir: the ``runs`` root (default ``<project>/runs``).
        out_dir: the report directory, replaced atomically (default
            ``<project>/reports/<profile>``).
        seeds: the seeds every run was trained with (default: the profile's ``seeds``); the
            figures show the first one's.
        allow_missing: show rows without a metrics file as missing instead of failing.
        link_root: directory the README section's image links are relative to.
    Returns:
        ``out_dir``.
    """
    runs_dir = Path(runs_dir) if runs_dir is not None else PROJECT_ROOT / RUNS
    out_dir = Path(out_dir) if out_dir is not None else reports_dir(PROJECT_ROOT, profile)
    seeds = tuple(seeds if seeds is not None else load_config([f"profile={profile}"]).seeds)
    if not seeds:
        raise StageError(f"report for profile {profile!r}: no seeds to read")
    base = runs_dir.parent
    layout = RunLayout(runs_dir, profile)
    index = experiment_index(profile)
    selected = select_tables(tables, index, layout)
    experiments = {t: row_experiments(index, t) for t in selected}
    check_runs(selected, experiments, layout, allow_missing, base)

    needed = {r.trained_as for refs in experiments.values() for r in refs.values()}
    files = {name: layout.metrics(name) for name in needed}
    metrics = {name: read_json(path) if path.is_file() else None for name, path in files.items()}
    shown = {name: Path(_shown(path, base)) for name, path in files.items()}
    built: dict[str, tuple[Grid, list[RowResult]]] = {
        t: build_table(TABLE_SPECS[t], paper_rows(t), experiments[t], metrics, shown)
        for t in selected}
    seed_scores = {name: read_seed_scores(layout, name, seeds) for name in needed}
    over_seeds: dict[str, tuple[Grid, SeedTable]] = {
        t: build_seed_table(TABLE_SPECS[t], rows, seed_scores, seeds,
                            lambda name, seed: _shown(layout.seed_scores(name, seed), base))
        for t, (_, rows) in built.items()}
    tune_file = layout.tune_results()
    tune_rows: list[dict[str, Any]] | None = read_json(tune_file) if tune_file.is_file() else None

    link = Path(os.path.relpath(out_dir.resolve(), link_root.resolve()))
    blocks: list[Block] = []
    plot_files: list[str] = []
    with atomic_directory(out_dir) as tmp:
        def plotted(path: Path | None, caption: str, block: Block) -> None:
            if path is not None:
                relative = path.relative_to(tmp).as_posix()
                plot_files.append(relative)
                block.images.append((caption, (link / relative).as_posix()))

        evaluated: dict[str, str] = {}
        for table, (grid, rows) in built.items():
            _write_grid(grid, tmp)
            block = Block(grid.title, to_markdown(grid))
            plotted(plots.write_curves(TABLE_SPECS[table], rows, layout, seeds,
                                       tmp / "plots" / f"curves_{table}.png"),
                    f"training and validation curves, {table}", block)
            seed_grid = over_seeds[table][0]
            _write_grid(seed_grid, tmp)
            blocks += [block, Block(seed_grid.title, to_markdown(seed_grid))]
            evaluated.update({k: v for k, v in _evaluated(rows).items() if k not in evaluated})
        # a figure shows one run: the first seed's
        first = seeds[0]
        walks = Block(f"Sampled nodes of a receiving pixel (cf. Fig. 4; seed {first})")
        pictures = Block("Qualitative results on Cityscapes val (image | ground truth | ours; "
                         f"seed {first})")
        for name, label in evaluated.items():
            if layout.walks(name, first).is_file():
                plotted(plots.write_sampling(name, first, label, layout,
                                             tmp / "plots" / f"sampling_{plots.slug(name)}.png"),
                        f"sampled nodes, {label}", walks)
            if layout.qualitative(name, first).is_file():
                plotted(plots.write_qualitative(
                    name, first, label, layout,
                    tmp / "plots" / f"qualitative_{plots.slug(name)}.png"),
                    f"qualitative, {label}", pictures)
        blocks += [b for b in (walks, pictures) if b.images]
        if tune_rows is not None:
            grid = tune_table(tune_rows)
            _write_grid(grid, tmp)
            blocks.append(Block(grid.title, to_markdown(grid)))
        intro = (SYNTHETIC_NOTE.format(profile=profile) if profile != "paper" else "") + \
            INTRO.format(runs=_shown(layout.root, base))
        atomic_write_text(tmp / "README_results.md", results_section(profile, blocks, intro))
        atomic_write_json(tmp / "summary.json", build_summary(
            profile, {t: (g.title, rows) for t, (g, rows) in built.items()}, tune_rows,
            plot_files, {t: table for t, (_, table) in over_seeds.items()}))
    return out_dir


def main(argv: Sequence[str] | None = None) -> None:
    parsed = parse_stage_args(argv, prog="python -m pipeline.report", doc=__doc__, flags=(
        Flag(("--tables",), {"help": "comma-separated paper tables (default: report.tables)"}),
        Flag(("--allow-missing",), {"action": "store_true", "help": "show rows without "
                                    "a metrics file as missing instead of failing"}),
        Flag(("--update-readme",), {"nargs": "?", "const": str(PROJECT_ROOT / "README.md"),
                                    "metavar": "README",
                                    "help": "also put the section into README (markers)"})))
    if parsed is None:
        return
    args = parsed.args
    cfg = load_config(parsed.overrides)
    tables = ([t.strip() for t in args.tables.split(",") if t.strip()] if args.tables
              else cfg.report.tables)
    readme = Path(args.update_readme) if args.update_readme else None
    if readme is not None:
        split_readme(readme)  # bad markers fail before any work
    paths = Layout.of(cfg, PROJECT_ROOT)
    out = run(cfg.profile, tables, paths.runs_root, paths.reports, seeds=cfg.seeds,
              allow_missing=args.allow_missing or cfg.report.allow_missing,
              link_root=readme.resolve().parent if readme else PROJECT_ROOT)
    if readme is not None:
        update_readme(readme, (out / "README_results.md").read_text(encoding="utf-8"))
    print(f"report: {out}")


if __name__ == "__main__":
    sys.exit(run_stage(main, None))
