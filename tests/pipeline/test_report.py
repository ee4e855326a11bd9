"""The report stage end to end on a fake ``runs/`` tree: tables mirror the paper's, aliases
read their trained experiment, plots are PNGs, summary.json, missing runs, the CLI."""

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

from dgmn.paper import paper_rows
from pipeline import report
from pipeline.common.errors import StageError, run_stage
from pipeline.layout import RunDirs
from pipeline.reporting.experiments import experiment_index, row_experiments
from pipeline.reporting.readme import END, START
from pipeline.reporting.runs import MissingRunError, RunLayout
from pipeline.reporting.specs import TABLE_SPECS

PROFILE = "smoke"
SELECTION = ("table1_cityscapes_val_ablation", "table6_cityscapes_val_rates",
             "table7_coco_val_rates_groups")
MORE = ("table4_coco_testdev", "table5_cityscapes_val_tricks", "table8_coco_val_backbones")
NAN_RUN, NAN_KEY = "table7/dgmn_rates_1_4_8_g2", "segm_AP"
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


def write_history(root: Path, name: str, task: str) -> None:
    metrics = ("miou",) if task == "segmentation" else ("bbox_AP", "segm_AP")
    val = [{"iteration": it, **{m: value_of(name) * it / 4 for m in metrics}} for it in (2, 4)]
    train = [{"iteration": it, "loss": 1.0 / it, "lr": 0.01} for it in (1, 2, 3, 4)]
    path = root / "train" / name / "history.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"train": train, "val": val}))


def write_walks(root: Path, name: str) -> None:
    rates, k = np.array([1, 2]), 3
    offsets = np.stack(np.meshgrid(np.arange(-1, 2), np.arange(-1, 2), indexing="ij"), -1)
    uniform = np.stack([np.array([2.0, 3.0]) + r * offsets.reshape(-1, 2) for r in rates])
    (root / "eval" / name).mkdir(parents=True, exist_ok=True)
    np.savez(root / "eval" / name / "walks.npz",
             image=np.full((32, 64, 3), 120, np.uint8), stride=np.array(8), rates=rates,
             kernel_size=np.array(k), receiver=np.array([2, 3]),
             positions=uniform + 0.4, uniform=uniform)


def write_qualitative(root: Path, name: str) -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 19, (2, 16, 32)).astype(np.uint8)
    labels[:, :2] = 255
    (root / "eval" / name).mkdir(parents=True, exist_ok=True)
    np.savez(root / "eval" / name / "qualitative.npz",
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
    yield report.run(PROFILE, SELECTION, runs, base / "reports" / PROFILE, link_root=base)


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


@pytest.fixture(scope="module")
def built_more(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The report of Tables 4, 5 and 8 (not in the default selection) from fake runs."""
    base = tmp_path_factory.mktemp("report_more")
    runs = make_runs(base / "runs", MORE)
    yield report.run(PROFILE, MORE, runs, base / "reports" / PROFILE, link_root=base)


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
        f"{t}.csv" for t in (*SELECTION[:2], "tune"))
