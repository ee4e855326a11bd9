"""The report stage end to end on a fake ``runs/`` tree of three seeds: tables mirror the
paper's, aliases read their trained experiment, the seed statistics, plots are PNGs,
summary.json, missing runs and seeds, the CLI."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
from scipy.stats import ttest_rel

from dgmn.paper import paper_rows
from pipeline import report
from pipeline.common.errors import StageError, run_stage
from pipeline.layout import RunDirs
from pipeline.reporting.experiments import experiment_index, row_experiments
from pipeline.reporting.plots import mean_curve
from pipeline.reporting.readme import END, START
from pipeline.reporting.runs import MissingRunError, RunLayout
from pipeline.reporting.specs import TABLE_SPECS

PROFILE = "smoke"
SELECTION = ("table1_cityscapes_val_ablation", "table6_cityscapes_val_rates",
             "table7_coco_val_rates_groups")
MORE = ("table4_coco_testdev", "table5_cityscapes_val_tricks", "table8_coco_val_backbones")
NAN_RUN, NAN_KEY = "table7/dgmn_rates_1_4_8_g2", "segm_AP"
NO_CONTEXT_RUN = "table1/deformable"  # its seeds' scores have no context classes' score
SEEDS = (0, 1, 2)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _trained(tables: tuple[str, ...] = SELECTION) -> dict[str, str]:
    """``{trained_as: task}`` of every run the tables read (one metrics file each)."""
    return {ref.trained_as: ref.task for ref in experiment_index(PROFILE) if ref.table in tables}


def value_of(name: str) -> float:
    """A distinct, recognisable number per trained experiment."""
    return 10.0 + sorted(_trained(tuple(TABLE_SPECS))).index(name) + 0.25


def write_metrics(root: Path, name: str, task: str) -> None:
    v = value_of(name)
    data = {"params_m": 4.1, "added_params_m": v / 100, "added_gmacs_paper": v / 10,
            "added_gmacs_full": v / 9, "gmacs_paper": 30.0, "gmacs_full": 31.0,
            "latency_ms": 12.3}
    if task == "segmentation":
        data |= {"miou": v, "miou_ms_flip": v + 1, "pixel_accuracy": 90.0}
    else:
        data |= {f"{kind}_AP{suffix}": v + offset for kind, offset in (("bbox", 0), ("segm", 1))
                 for suffix in ("", "50", "75", "s", "m", "l")}
        if name == NAN_RUN:
            data[NAN_KEY] = float("nan")
    path = RunDirs(root).metrics(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))  # NaN written the way Python's json writes it


def seed_noise(name: str, seeds: tuple[int, ...] = SEEDS) -> dict[int, tuple[float, float]]:
    """Per seed, two offsets (headline, context) of zero mean over ``seeds``: the seeds'
    scores spread about the metrics file's mean, differently for every experiment."""
    noise = np.random.default_rng(sorted(_trained(tuple(TABLE_SPECS))).index(name)).normal(
        0.0, 0.5, (len(seeds), 2))
    noise -= noise.mean(axis=0)
    return {seed: (float(a), float(b)) for seed, (a, b) in zip(seeds, noise, strict=True)}


def write_seed_scores(root: Path, name: str, task: str) -> None:
    """Each seed's ``scores.json``: the headline and context classes' scores."""
    headline, context = ("miou", "context_miou") if task == "segmentation" else (
        "bbox_AP", "context_bbox_AP")
    for seed, (offset, context_offset) in seed_noise(name).items():
        data = {headline: value_of(name) + offset, "params_m": 4.1, "latency_ms": 12.3}
        if name != NO_CONTEXT_RUN:
            data[context] = value_of(name) / 2 + 0.003 + context_offset  # no x.xx5 ties
        if name == NAN_RUN:
            data[NAN_KEY] = float("nan")
        path = RunDirs(root).eval(name, seed) / "scores.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))


def write_history(root: Path, name: str, task: str) -> None:
    metrics = ("miou",) if task == "segmentation" else ("bbox_AP", "segm_AP")
    for seed in SEEDS:
        val = [{"iteration": it, **{m: (value_of(name) + seed) * it / 4 for m in metrics}}
               for it in (2, 4)]
        train = [{"iteration": it, "loss": (1.0 + seed) / it, "lr": 0.01} for it in (1, 2, 3, 4)]
        path = RunDirs(root).train(name, seed) / "history.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"train": train, "val": val}))


def write_walks(root: Path, name: str, seed: int = SEEDS[0]) -> None:
    rates, k = np.array([1, 2]), 3
    offsets = np.stack(np.meshgrid(np.arange(-1, 2), np.arange(-1, 2), indexing="ij"), -1)
    uniform = np.stack([np.array([2.0, 3.0]) + r * offsets.reshape(-1, 2) for r in rates])
    directory = RunDirs(root).eval(name, seed)
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / "walks.npz",
             image=np.full((32, 64, 3), 120, np.uint8), stride=np.array(8), rates=rates,
             kernel_size=np.array(k), receiver=np.array([2, 3]),
             positions=uniform + 0.4, uniform=uniform)


def write_qualitative(root: Path, name: str, seed: int = SEEDS[0]) -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 19, (2, 16, 32)).astype(np.uint8)
    labels[:, :2] = 255
    directory = RunDirs(root).eval(name, seed)
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / "qualitative.npz",
             images=rng.integers(0, 255, (2, 16, 32, 3)).astype(np.uint8), labels=labels,
             predictions=rng.integers(0, 19, (2, 16, 32)).astype(np.uint8))


TUNE_ROWS = [{"trial": 0, "rates": [1], "groups": 4, "metric": "miou", "value": 3.5,
              "iterations": 4, "params_m": 4.11, "gmacs": 0.55, "error": None},
             {"trial": 1, "rates": [1, 6, 12], "groups": 4, "metric": "miou",
              "value": float("nan"), "iterations": 2, "params_m": 4.2, "gmacs": 0.6,
              "error": "RuntimeError: boom"}]


def make_runs(runs_dir: Path, tables: tuple[str, ...] = SELECTION) -> Path:
    """A fake ``runs/<profile>`` tree for ``tables``; returns ``runs_dir``."""
    root = runs_dir / PROFILE
    trained = _trained(tables)
    for name, task in trained.items():
        write_metrics(root, name, task)
        write_seed_scores(root, name, task)
        write_history(root, name, task)
    if "table1/dgmn_da_dw_ds" in trained:
        write_walks(root, "table1/dgmn_da_dw_ds")
        write_qualitative(root, "table1/dgmn_da_dw_ds")
    (root / "tune").mkdir(parents=True)
    (root / "tune" / "results.json").write_text(json.dumps(TUNE_ROWS))
    return runs_dir


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("report")
    runs = make_runs(base / "runs")
    yield report.run(PROFILE, SELECTION, runs, base / "reports" / PROFILE, seeds=SEEDS,
                     link_root=base)


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


@pytest.fixture(scope="module")
def built_more(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The report of Tables 4, 5 and 8 (not in the default selection) from fake runs."""
    base = tmp_path_factory.mktemp("report_more")
    runs = make_runs(base / "runs", MORE)
    yield report.run(PROFILE, MORE, runs, base / "reports" / PROFILE, seeds=SEEDS,
                     link_root=base)


def assert_rows_mirror_the_paper(built: Path, table: str) -> None:
    """Every paper row in order, labelled by its experiment, our numbers from its run's
    metrics file and the paper's from tables.yaml."""
    spec, paper = TABLE_SPECS[table], paper_rows(table)
    refs = row_experiments(experiment_index(PROFILE), table)
    rows = read_csv(built / f"{table}.csv")
    assert [r["model"] for r in rows] == [refs[i].label for i in range(len(paper))]
    for index, row in enumerate(rows):
        ref = refs[index]
        assert row["run"] == ref.trained_as
        for column in spec.columns:
            cell = row[column.header]
            if column.source == "ours":
                expected = json.loads(RunDirs.of(built.parent.parent / "runs", PROFILE)
                                      .metrics(ref.trained_as).read_text())
                value = expected[column.key]
                assert cell == ("" if math.isnan(value) else f"{value:.{column.digits}f}")
            elif column.kind == "number":
                value = paper[index][column.key]
                assert cell == ("" if value is None else f"{value:.{column.digits}f}")


@pytest.mark.parametrize("table", SELECTION)
def test_every_paper_row_in_order_with_ours_beside_paper(built: Path, table: str) -> None:
    assert_rows_mirror_the_paper(built, table)


@pytest.mark.parametrize("table", MORE)
def test_tables_4_5_8_mirror_the_paper(built_more: Path, table: str) -> None:
    assert_rows_mirror_the_paper(built_more, table)


def test_table5_rows_and_multi_scale_column(built_more: Path) -> None:
    rows = read_csv(built_more / "table5_cityscapes_val_tricks.csv")
    assert [r["mIoU (paper)"] for r in rows] == ["79.2", "79.7", "80.3", "81.1"]
    assert [(r["OHEM"], r["Multi-grid"], r["MS"]) for r in rows] == [
        ("", "", ""), ("✓", "", ""), ("✓", "✓", ""), ("✓", "✓", "✓")]
    assert [r["run"] for r in rows] == ["table5/dgmn", "table5/dgmn_ohem",
                                        "table5/dgmn_ohem_multigrid",
                                        "table5/dgmn_ohem_multigrid"]  # MS: same model
    multi_scale = value_of("table5/dgmn_ohem_multigrid") + 1  # write_metrics' miou_ms_flip
    assert rows[3]["mIoU (ours, MS + flip)"] == f"{multi_scale:.1f}"
    assert rows[3]["mIoU (ours, single scale)"] == rows[2]["mIoU (ours, single scale)"]


def test_table8_reads_the_table4_runs_evaluated_on_val(built_more: Path) -> None:
    rows = read_csv(built_more / "table8_coco_val_backbones.csv")
    assert [r["run"] for r in rows] == ["table4/r101_maskrcnn", "table4/r101_dgmn_c5",
                                        "table4/x101_maskrcnn", "table4/x101_dgmn_c5"]
    assert [r["backbone"] for r in rows] == ["resnet101"] * 2 + ["resnext101"] * 2
    assert [(r["AP box (paper)"], r["AP mask (paper)"]) for r in rows] == [
        ("40.1", "36.2"), ("41.7", "37.4"), ("42.2", "37.8"), ("43.7", "38.7")]
    table4 = read_csv(built_more / "table4_coco_testdev.csv")
    assert rows[0]["AP box (ours)"] == table4[3]["AP box (ours, val)"]


def test_table4_labels_our_val_beside_the_papers_test_dev(built_more: Path) -> None:
    table = "table4_coco_testdev"
    header = next(csv.reader(io.StringIO((built_more / f"{table}.csv").read_text())))
    ours = [h for h in header if "(ours" in h]
    paper = [h for h in header if "(paper" in h]
    assert len(ours) == len(paper) == 6
    assert all(h.endswith("(ours, val)") for h in ours)
    assert all(h.endswith("(paper, test-dev)") for h in paper)
    md = (built_more / f"{table}.md").read_text(encoding="utf-8")
    title = md.splitlines()[0]
    assert "paper: COCO test-dev" in title and "ours: COCO val" in title
    assert "| AP box (ours, val) | AP box (paper, test-dev) |" in md
    assert r"AP box (ours, val) & AP box (paper, test-dev)" in (
        built_more / f"{table}.tex").read_text(encoding="utf-8")


def test_aliases_show_their_trained_experiments_numbers(built: Path) -> None:
    table1 = read_csv(built / "table1_cityscapes_val_ablation.csv")
    table6 = read_csv(built / "table6_cityscapes_val_rates.csv")
    assert table6[0]["run"] == "table1/dilated_fcn"
    expected = f"{value_of('table1/dilated_fcn'):.1f}"
    assert table6[0]["mIoU (ours)"] == table1[0]["mIoU (ours)"] == expected
    assert table6[5]["mIoU (ours)"] == table1[6]["mIoU (ours)"]
    assert table6[0]["mIoU (paper)"] == "75.0" and table6[5]["φ"] == "{1,6,12,24,36}"
    table7 = read_csv(built / "table7_coco_val_rates_groups.csv")
    assert table7[0]["run"] == "table2/maskrcnn" and table7[5]["run"] == "table2/dgmn_c5"
    assert table7[3]["G"] == "2" and table7[1]["DS"] == "" and table7[2]["DS"] == "✓"


def test_non_finite_is_a_dash_and_reported_in_summary(built: Path) -> None:
    table = "table7_coco_val_rates_groups"
    md = (built / f"{table}.md").read_text(encoding="utf-8")
    line = next(x for x in md.splitlines() if f"| {NAN_RUN} |" in x)
    assert "| – |" in line and "nan" not in md.lower()
    summary = json.loads((built / "summary.json").read_text())
    row = next(r for r in summary["tables"][table]["rows"] if r["trained_as"] == NAN_RUN)
    assert row["non_finite"] == [NAN_KEY] and row["ours"][NAN_KEY] is None
    assert row["finite"] is False and summary["all_finite"] is False
    others = [r for t in summary["tables"].values() for r in t["rows"] if r is not row]
    assert all(r["finite"] and r["status"] == "ok" for r in others)
    assert {t: len(v["rows"]) for t, v in summary["tables"].items()} == {
        t: len(paper_rows(t)) for t in SELECTION}


def test_latex_is_a_tabular_with_one_line_per_row(built: Path) -> None:
    for table in SELECTION:
        tex = (built / f"{table}.tex").read_text(encoding="utf-8")
        assert tex.startswith(r"\begin{tabular}{") and tex.rstrip().endswith(r"\end{tabular}")
        assert tex.count(r" \\") == len(paper_rows(table)) + 1  # header + rows
        assert "_" not in tex.replace(r"\_", "")  # every underscore escaped
    assert r"$\varphi$" in (built / "table6_cityscapes_val_rates.tex").read_text()


def test_plots_are_pngs(built: Path) -> None:
    names = sorted(p.name for p in (built / "plots").iterdir())
    assert names == sorted([*(f"curves_{t}.png" for t in SELECTION),
                            "sampling_table1-dgmn_da_dw_ds.png",
                            "qualitative_table1-dgmn_da_dw_ds.png"])
    for path in (built / "plots").iterdir():
        assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 1000
        image = mpimg.imread(path)
        assert image.ndim == 3 and image.shape[2] in (3, 4) and min(image.shape[:2]) > 100
    summary = json.loads((built / "summary.json").read_text())
    assert sorted(summary["plots"]) == sorted(f"plots/{n}" for n in names)


def test_readme_section_and_tune_table(built: Path) -> None:
    section = (built / "README_results.md").read_text(encoding="utf-8")
    for table in SELECTION:
        assert TABLE_SPECS[table].title in section
    links = [line.split("](", 1)[1].rstrip(")") for line in section.splitlines()
             if line.startswith("![")]
    assert len(links) == 5 and all((built.parent.parent / link).is_file() for link in links)
    tune = read_csv(built / "tune.csv")
    assert [r["φ"] for r in tune] == ["{1}", "{1,6,12}"]
    assert tune[1]["mIoU % (ours)"] == "" and tune[1]["mIoU % (paper)"] == "79.7"
    assert tune[0]["mIoU % (paper)"] == "" and "boom" in tune[1]["error"]
    assert "Ray Tune sweep" in section


def seed_values(runs: Path, trained_as: str, key: str,
                seeds: tuple[int, ...] = SEEDS) -> dict[int, float]:
    """``{seed: score}`` read straight from the seeds' ``scores.json`` that exist."""
    out = {}
    for seed in seeds:
        path = RunDirs.of(runs, PROFILE).eval(trained_as, seed) / "scores.json"
        if path.is_file() and key in (data := json.loads(path.read_text())):
            out[seed] = data[key]
    return out


def expected_delta(ours: dict[int, float], baseline: dict[int, float]) -> tuple[str, str]:
    """The Δ cell and verdict from scipy's paired t-test over the common seeds."""
    seeds = sorted(set(ours) & set(baseline))
    a, b = [ours[s] for s in seeds], [baseline[s] for s in seeds]
    mean = float(np.mean(np.subtract(a, b)))
    interval = ttest_rel(a, b).confidence_interval(confidence_level=0.95)
    low, high = float(interval.low), float(interval.high)
    verdict = "better" if low > 0 else "worse" if high < 0 else "no difference shown"
    return f"{mean:+.2f} [{low:+.2f}, {high:+.2f}]", verdict


@pytest.mark.parametrize("table", SELECTION)
def test_seed_table_has_mean_std_and_scipys_paired_intervals(built: Path, table: str) -> None:
    spec = TABLE_SPECS[table]
    runs = built.parent.parent / "runs"
    rows, main = read_csv(built / f"{table}_seeds.csv"), read_csv(built / f"{table}.csv")
    summary = json.loads((built / "summary.json").read_text())["tables"][table]
    assert summary["over_seeds"] == {
        "seeds": list(SEEDS), "headline": spec.headline, "context": spec.context,
        "baseline_row": 0, "baseline": main[0]["model"], "level": 0.95}
    assert [r["model"] for r in rows] == [r["model"] for r in main]
    base = main[0]["run"]
    shown = {"miou": "mIoU", "bbox_AP": "AP box"}[spec.headline]
    for index, (row, main_row, entry) in enumerate(zip(rows, main, summary["rows"],
                                                       strict=True)):
        name = main_row["run"]
        assert row["run"] == name and row["seeds"] == "3"
        for key, metric, verdict_header in ((spec.headline, shown, "verdict"),
                                            (spec.context, f"context {shown}",
                                             "verdict (context)")):
            mean_std, delta = row[f"{metric} mean ± std"], row[f"Δ {metric} [95% CI]"]
            ours, reference = seed_values(runs, name, key), seed_values(runs, base, key)
            if not ours:  # no context classes' score: blank cells
                assert name == NO_CONTEXT_RUN and key == spec.context
                assert mean_std == delta == row[verdict_header] == ""
                assert entry["over_seeds"]["context"] is None
                continue
            values = list(ours.values())
            assert mean_std == f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}"
            if index == 0:
                assert row[verdict_header] == "baseline" and delta == ""
            else:
                assert (delta, row[verdict_header]) == expected_delta(ours, reference)
        # the seeds' mean is the metrics file's value (the fake seeds spread about it)
        assert row[f"{shown} mean ± std"].split(" ± ")[0] == f"{value_of(name):.2f}"
        over = entry["over_seeds"]
        assert over["status"] == "ok" and over["seeds"] == list(SEEDS)
        assert over["headline"]["by_seed"] == {str(k): v for k, v in seed_values(
            runs, name, spec.headline).items()}
        if index:
            interval = ttest_rel(list(seed_values(runs, name, spec.headline).values()),
                                 list(seed_values(runs, base, spec.headline).values())
                                 ).confidence_interval()
            vs = over["vs_baseline"]["headline"]
            assert (vs["low"], vs["high"]) == pytest.approx((interval.low, interval.high))
            assert vs["n"] == 3
        else:
            assert over["vs_baseline"] is None


def test_seed_tables_call_rows_better_worse_or_neither(built: Path) -> None:
    verdicts = {r["verdict"] for t in SELECTION for r in read_csv(built / f"{t}_seeds.csv")}
    assert verdicts == {"baseline", "better", "worse", "no difference shown"}
    table1 = read_csv(built / "table1_cityscapes_val_ablation_seeds.csv")
    blank = next(r for r in table1 if r["run"] == NO_CONTEXT_RUN)
    assert blank["context mIoU mean ± std"] == blank["verdict (context)"] == ""
    assert blank["mIoU mean ± std"] and blank["verdict"]
    md = (built / "table1_cityscapes_val_ablation_seeds.md").read_text(encoding="utf-8")
    assert md.startswith("**Table 1 over seeds:") and "Dilated FCN (row 0)" in md
    assert "names no winner" in md
    tex = (built / "table7_coco_val_rates_groups_seeds.tex").read_text(encoding="utf-8")
    assert r"$\Delta$ AP box [95\% CI]" in tex and r" $\pm$ " in tex
    section = (built / "README_results.md").read_text(encoding="utf-8")
    titles = [line for line in section.splitlines() if line.startswith("### ")]
    for table in SELECTION:  # each seed table right after its table
        position = titles.index(f"### {TABLE_SPECS[table].title}")
        assert titles[position + 1].startswith(f"### {TABLE_SPECS[table].title.split(':')[0]}"
                                               " over seeds")


def test_missing_seeds_are_named_and_paired_over_the_rest(tmp_path: Path) -> None:
    runs = make_runs(tmp_path / "runs", SELECTION[:1])
    dirs = RunDirs.of(runs, PROFILE)
    (dirs.eval("table1/aspp", 2) / "scores.json").unlink()
    for seed in SEEDS:
        (dirs.eval("table1/nonlocal", seed) / "scores.json").unlink()
    out = report.run(PROFILE, SELECTION[:1], runs, tmp_path / "out", seeds=SEEDS)
    table = SELECTION[0]
    rows = {r["run"]: r for r in read_csv(out / f"{table}_seeds.csv")}
    aspp, nonlocal_ = rows["table1/aspp"], rows["missing (table1/nonlocal)"]
    assert aspp["seeds"] == "2 of 3" and nonlocal_["seeds"] == "0 of 3"
    delta, verdict = expected_delta(seed_values(runs, "table1/aspp", "miou"),
                                    seed_values(runs, "table1/dilated_fcn", "miou"))
    assert aspp["Δ mIoU [95% CI]"] == delta and aspp["verdict"] == verdict
    assert nonlocal_["mIoU mean ± std"] == "" and nonlocal_["verdict"] == "n/a (no common seed)"
    md = (out / f"{table}_seeds.md").read_text(encoding="utf-8")
    assert "runs/smoke/eval/table1/aspp/seed2/scores.json not found" in md
    assert "runs/smoke/eval/table1/nonlocal/seed0/scores.json" in md
    summary = json.loads((out / "summary.json").read_text())["tables"][table]["rows"]
    by_run = {r["trained_as"]: r["over_seeds"] for r in summary}
    assert by_run["table1/aspp"]["status"] == "partial"
    assert by_run["table1/aspp"]["missing_seeds"] == [2]
    assert by_run["table1/aspp"]["vs_baseline"]["headline"]["n"] == 2
    assert by_run["table1/nonlocal"]["status"] == "missing"
    assert by_run["table1/nonlocal"]["headline"]["mean"] is None
    assert [r["status"] for r in summary].count("ok") == len(summary)  # metrics files exist


def test_one_seed_names_no_winner(tmp_path: Path) -> None:
    runs = make_runs(tmp_path / "runs", SELECTION[:1])
    out = report.run(PROFILE, SELECTION[:1], runs, tmp_path / "out", seeds=(1,))
    rows = read_csv(out / f"{SELECTION[0]}_seeds.csv")
    assert [r["verdict"] for r in rows] == ["baseline"] + ["n/a (one seed)"] * (len(rows) - 1)
    nonlocal_ = next(r for r in rows if r["run"] == "table1/nonlocal")
    one = seed_values(runs, "table1/nonlocal", "miou", (1,))[1]
    assert nonlocal_["seeds"] == "1" and nonlocal_["mIoU mean ± std"] == f"{one:.2f}"
    base = seed_values(runs, "table1/dilated_fcn", "miou", (1,))[1]
    assert nonlocal_["Δ mIoU [95% CI]"] == f"{one - base:+.2f}"  # no interval


def test_curves_average_the_seeds_at_common_iterations() -> None:
    first = ((2, 4, 6), (1.0, 3.0, 5.0))
    second = ((2, 4), (3.0, None))  # stopped early; its validation at 4 failed
    iterations, values = mean_curve([first, second])
    assert iterations == (2, 4) and values[0] == 2.0 and math.isnan(values[1])
    assert mean_curve([first]) == ((2, 4, 6), (1.0, 3.0, 5.0))
    assert mean_curve([]) is None and mean_curve([first, ((8,), (1.0,))]) is None


def test_missing_metrics_file_is_an_error_naming_it(tmp_path: Path) -> None:
    runs = make_runs(tmp_path / "runs")
    gone = runs / PROFILE / "metrics" / "table1" / "aspp.json"
    gone.unlink()
    out = tmp_path / "reports"
    named = re.escape("runs/smoke/metrics/table1/aspp.json")
    with pytest.raises(MissingRunError, match=named):
        report.run(PROFILE, SELECTION[:1], runs, out)
    assert not out.exists()
    report.run(PROFILE, SELECTION[:1], runs, out, allow_missing=True)
    row = read_csv(out / f"{SELECTION[0]}.csv")[2]
    assert row["run"] == "missing (table1/aspp)" and row["mIoU (ours)"] == ""
    assert row["mIoU (paper)"] == "78.9"
    md = (out / f"{SELECTION[0]}.md").read_text(encoding="utf-8")
    assert "runs/smoke/metrics/table1/aspp.json not found" in md
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tables"][SELECTION[0]]["rows"][2]["status"] == "missing"


def test_table_without_any_run_fails_even_when_missing_is_allowed(tmp_path: Path) -> None:
    runs = make_runs(tmp_path / "runs", SELECTION[:1])
    table = "table7_coco_val_rates_groups"
    with pytest.raises(MissingRunError, match=rf"no evaluated run at all.*{table}"):
        report.run(PROFILE, [table], runs, tmp_path / "out", allow_missing=True)
    with pytest.raises(StageError, match="unknown"):
        report.run(PROFILE, ["table9"], runs, tmp_path / "out")


def test_default_selection_adds_table4_only_when_evaluated(tmp_path: Path) -> None:
    layout = RunLayout(make_runs(tmp_path / "runs"), PROFILE)
    index = experiment_index(PROFILE)
    assert "table4_coco_testdev" not in report.select_tables(None, index, layout)
    # table4/r50_dgmn_c5 is an alias of table2/dgmn_c5: evaluated, yet not a table4 run
    assert layout.metrics("table2/dgmn_c5").is_file()
    write_metrics(layout.root, "table4/r101_maskrcnn", "detection")
    assert report.select_tables(None, index, layout)[-1] == "table4_coco_testdev"


def test_cli_writes_reports_and_updates_readme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    make_runs(tmp_path / "runs")
    monkeypatch.setattr(report, "PROJECT_ROOT", tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("intro\n")
    args = [f"profile={PROFILE}", "--tables", ",".join(SELECTION[:2]), "--update-readme",
            str(readme)]
    assert run_stage(report.main, args) == 2
    assert "results:start" in capsys.readouterr().err
    assert not (tmp_path / "reports").exists()  # failed before any work
    readme.write_text(f"intro\n{START}\nold\n{END}\ntail\n")
    assert run_stage(report.main, args) == 0
    text = readme.read_text(encoding="utf-8")
    assert text.startswith(f"intro\n{START}\n## Results (profile `smoke`)")
    assert text.endswith(f"{END}\ntail\n") and "old" not in text
    assert "(reports/smoke/plots/curves_table1_cityscapes_val_ablation.png)" in text
    assert sorted(p.name for p in (tmp_path / "reports" / PROFILE).glob("*.csv")) == sorted(
        f"{t}.csv" for t in (*SELECTION[:2], *(f"{t}_seeds" for t in SELECTION[:2]), "tune"))
