"""``python -m dgmn.metrics.flops_table``: Table 1 rows and COCO whole-model totals beside the
paper's, counted on the modules and models the experiments build."""

from __future__ import annotations

import functools
import json

import pytest

from dgmn.metrics import flops_table
from dgmn.metrics.flops_table import COCO_MODELS, TABLE1_MODULES, CocoRow, coco_rows, table1_rows
from dgmn.models.detection import build_mask_rcnn, trainable_parameters
from dgmn.nn import build_context_module
from dgmn.paper import paper_rows, paper_tables
from pipeline.config import experiment_names, load_config

TABLE1_ORDER = ["deformable", "aspp", "nonlocal", "dgmn_da", "dgmn_da_dw", "dgmn_da_dw_ds"]


@functools.cache
def _all_experiments() -> dict[tuple[str, int], dict]:
    """``{(table, row): model config}`` of the Table 1, 2 and 4 experiments (paper profile)."""
    models = {}
    for name in experiment_names(include_aliases=True):
        if name.split("/")[0] not in ("table1", "table2", "table4"):
            continue
        cfg = load_config([f"experiment={name}", "profile=paper"])
        models[cfg.experiment.table, cfg.experiment.row] = cfg.model
    return models


def _experiments(table: str) -> dict[int, dict]:
    return {row: model for (name, row), model in _all_experiments().items() if name == table}


def test_table1_modules_are_the_ones_the_experiments_build():
    models = _experiments("table1_cityscapes_val_ablation")
    for index, paper in enumerate(paper_rows("table1_cityscapes_val_ablation")):
        model = models[index]
        if paper["model"] not in TABLE1_MODULES:
            assert model["context"] is None  # the Dilated FCN baseline
            continue
        ours = build_context_module(TABLE1_MODULES[paper["model"]], 64)
        theirs = build_context_module(model["context"], 64, **model["context_kwargs"])
        assert type(ours) is type(theirs) and repr(ours) == repr(theirs), paper["model"]
    assert list(TABLE1_MODULES) == TABLE1_ORDER


def test_coco_models_are_the_ones_the_experiments_build():
    built = {(m["insert"], m["backbone"]) for (table, _), m in _all_experiments().items()
             if table in ("table2_coco_val", "table4_coco_testdev")}
    for (model, backbone), arguments in COCO_MODELS.items():
        assert arguments == {"backbone": backbone, "insert": model}
        assert (model, backbone) in built
    totals = {(t["model"], t["backbone"]) for t in paper_tables()["model_totals"]}
    assert totals <= set(COCO_MODELS)


def test_table1_cli_prints_every_row_and_writes_json(tmp_path, capsys):
    out = tmp_path / "table1.json"
    assert flops_table.main(["--channels", "64", "--size", "13", "--no-coco",
                             "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert set(data) == {"table1"} and "Whole Mask R-CNN" not in printed
    rows = data["table1"]
    assert [r["model"] for r in rows] == TABLE1_ORDER
    for row in rows:
        assert f"| {row['model']} |" in printed
        assert row["params_m"] > 0 and row["paper_gmacs"] > 0
    assert rows[3]["paper_params_m"] == 0.57  # the paper's figures sit beside ours
    assert not list(tmp_path.glob("*.tmp"))


def test_cli_prints_coco_totals_beside_the_papers(tmp_path, capsys, monkeypatch):
    calls = []

    def fake_rows(image_size, **kwargs):
        calls.append((image_size, kwargs))
        return [CocoRow("dgmn_c4_c5", "resnet50", 51.09, 280.0, 300.0, 51.1, 297.1)]

    monkeypatch.setattr(flops_table, "coco_rows", fake_rows)
    out = tmp_path / "all.json"
    assert flops_table.main(["--models", "dgmn_da", "--channels", "16", "--size", "5",
                             "--coco-size", "64", "96", "--json", str(out)]) == 0
    assert calls == [((64, 96), {"min_size": 64, "max_size": 96})]
    printed = capsys.readouterr().out
    assert "| dgmn_c4_c5 | resnet50 | 51.09 | 51.1 | 280.0 | 300.0 | 297.1 |" in printed
    assert json.loads(out.read_text())["coco_totals"][0]["paper_gflops"] == 297.1
    flops_table.main(["--models", "dgmn_da", "--channels", "16", "--size", "5"])
    assert calls[-1] == ((800, 1333), {"min_size": 800, "max_size": 1333})  # the default


def test_coco_rows_count_each_model_beside_the_papers_total(monkeypatch):
    """On resnet_tiny (fast): trainable parameters of the paper's setting and one forward."""
    tiny = {key: {**arguments, "backbone": "resnet_tiny"}
            for key, arguments in COCO_MODELS.items()}
    monkeypatch.setattr(flops_table, "COCO_MODELS", tiny)
    small = {"min_size": 64, "max_size": 96, "rpn_post_nms_top_n_test": 20,
             "box_detections_per_img": 5}
    rows = coco_rows((64, 96), **small)
    assert [(r.model, r.backbone) for r in rows] == list(COCO_MODELS)
    paper = {(t["model"], t["backbone"]): t for t in paper_tables()["model_totals"]}
    for row, arguments in zip(rows, tiny.values(), strict=True):
        model = build_mask_rcnn(**arguments, frozen_bn=True, trainable_layers=3)
        assert row.params_m * 1e6 == trainable_parameters(model)
        assert 0 < row.paper_gmacs < row.full_gmacs  # + the box head's fully connected layers
        reported = paper.get((row.model, row.backbone), {})
        assert (row.paper_params_m, row.paper_gflops) == (reported.get("params_m"),
                                                          reported.get("gflops"))
    assert rows[2].params_m > rows[0].params_m  # DGMN (C4, C5) on the R-50 baseline
    assert coco_rows(None, **small)[1].paper_gmacs is None  # parameters only


def test_unknown_table1_model_is_named():
    with pytest.raises(ValueError, match="'fcn'"):
        table1_rows(models=["fcn"])


@pytest.mark.parametrize("argv", [["--size", "0"], ["--coco-size", "0", "96"]])
def test_bad_sizes_exit_2_naming_them(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        flops_table.main(argv)
    assert exit_info.value.code == 2 and "must be positive" in capsys.readouterr().err
