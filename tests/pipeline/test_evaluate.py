"""The evaluate stage on a (randomly initialised) Mask R-CNN: COCO results JSON and AP."""

from __future__ import annotations

import json

import pytest
import torch

from pipeline.config import load_config
from pipeline.data.fetch import FetchConfig
from pipeline.data.fetch import run as fetch
from pipeline.data.preprocess import PreprocessConfig
from pipeline.data.preprocess import run as preprocess
from pipeline.data.synthetic.coco import SyntheticCocoConfig
from pipeline.evaluate import evaluate_seeds
from pipeline.layout import PER_CLASS, Layout
from pipeline.tasks.registry import build_task


@pytest.mark.slow
def test_detection_evaluation_writes_coco_results_and_ap(tmp_path):
    raw = tmp_path / "raw" / "coco2017"
    fetch(FetchConfig(dataset="synthetic_coco", root=raw, progress=False,
                      synthetic_coco=SyntheticCocoConfig(num_train=2, num_val=3, min_side=64,
                                                         max_side=96)))
    preprocess(PreprocessConfig(dataset="synthetic_coco", raw_root=raw,
                                out_root=tmp_path / "processed" / "coco2017", progress=False))
    cfg = load_config(["experiment=table2/dgmn_c5", "profile=smoke",
                       f"paths.processed={tmp_path / 'processed'}",
                       f"paths.runs={tmp_path / 'runs'}", "data.val_max_images=null"])
    trained = tmp_path / "runs" / "smoke" / "train" / "table2" / "dgmn_c5" / "seed0"
    trained.mkdir(parents=True)
    torch.save(build_task(cfg, tmp_path).build_model().state_dict(), trained / "model.pt")

    (metrics,) = evaluate_seeds(cfg, tmp_path)
    out = tmp_path / "runs" / "smoke" / "eval" / "table2" / "dgmn_c5" / "seed0"
    layout = Layout.of(cfg, tmp_path)
    scores = json.loads(layout.metrics_file.read_text())  # numbers only: DVC's metrics file
    assert scores["bbox_AP"] == metrics["bbox_AP"] and scores["latency_ms"] > 0
    assert all(isinstance(v, float) for v in scores.values())
    assert json.loads((out / "evaluation.json").read_text())["task"] == "detection"
    # the box AP of each category, as records for `dvc plots`
    per_class = json.loads((layout.plots_dir / PER_CLASS).read_text())
    coco = build_task(cfg, tmp_path).val_dataset().coco
    assert [r["class"] for r in per_class] == [coco.cats[i]["name"] for i in coco.getCatIds()]
    assert {r["metric"] for r in per_class} == {"bbox_AP"}
    assert all(r["value"] is None or 0.0 <= r["value"] <= 100.0 for r in per_class)
    for key in ("bbox_AP", "bbox_AP50", "bbox_AP75", "segm_AP", "segm_AP50", "segm_AP75"):
        assert 0.0 <= metrics[key] <= 100.0, key
    results = json.loads((out / "coco_results.json").read_text())
    assert isinstance(results, list)
    for result in results:
        assert {"image_id", "category_id", "bbox", "score", "segmentation"} <= set(result)
    # DGMN after the three res5 3×3 convs adds parameters and convolution MACs
    assert metrics["added_params_m"] > 0 and metrics["added_gmacs_paper"] > 0
    assert metrics["latency_ms"] > 0 and metrics["task"] == "detection"
