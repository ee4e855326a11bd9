"""COCO results conversion and COCOeval wrapper on a tiny in-memory ground truth."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("pycocotools")
# pycocotools 2.0.11's decode under numpy 2.4: harmless, not ours
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

from pycocotools import mask as mask_util  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402

from dgmn.data.coco_format import make_coco_api  # noqa: E402
from dgmn.metrics.coco import (  # noqa: E402
    STAT_NAMES,
    detections_to_coco_results,
    evaluate_coco,
    evaluate_coco_with_summary,
    write_coco_results,
)

CAT_A, CAT_B = 3, 7  # sparse on purpose: contiguous labels 1, 2 map back to 3, 7
LABEL_TO_CAT = {1: CAT_A, 2: CAT_B}
CAT_TO_LABEL = {c: lbl for lbl, c in LABEL_TO_CAT.items()}


def _rect(x: float, y: float, w: float, h: float) -> list[list[float]]:
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def _ground_truth() -> dict[str, Any]:
    images = [
        {"id": 1, "width": 120, "height": 100, "file_name": "a.jpg"},
        {"id": 2, "width": 80, "height": 80, "file_name": "b.jpg"},
        {"id": 5, "width": 96, "height": 64, "file_name": "c.jpg"},
    ]
    polygons = [  # (image, category, polygon)
        (1, CAT_A, _rect(10, 10, 40, 30)),
        (1, CAT_B, _rect(60, 50, 50, 40)),
        (1, CAT_A, [[70, 5, 110, 5, 90, 40]]),  # a triangle: mask AP sees its real shape
        (2, CAT_B, _rect(5, 5, 30, 60)),
        (2, CAT_A, _rect(40, 20, 35, 25)),
        (5, CAT_B, _rect(20, 10, 50, 45)),
    ]
    annotations = []
    for i, (image_id, cat, poly) in enumerate(polygons, start=1):
        img = images[[im["id"] for im in images].index(image_id)]
        rle = mask_util.merge(mask_util.frPyObjects(poly, img["height"], img["width"]))
        xs, ys = poly[0][0::2], poly[0][1::2]
        annotations.append({
            "id": i, "image_id": image_id, "category_id": cat, "segmentation": poly,
            "area": float(mask_util.area(rle)), "iscrowd": 0,
            "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
        })
    # one crowd region (uncompressed RLE, as COCO stores crowds) in image 5
    crowd = np.zeros((64, 96), dtype=np.uint8)
    crowd[40:60, 75:92] = 1
    crowd_rle = mask_util.encode(np.asfortranarray(crowd))
    counts = _uncompressed_counts(crowd)
    annotations.append({
        "id": len(annotations) + 1, "image_id": 5, "category_id": CAT_A,
        "segmentation": {"counts": counts, "size": [64, 96]},
        "area": float(mask_util.area(crowd_rle)), "iscrowd": 1,
        "bbox": [float(v) for v in mask_util.toBbox(crowd_rle)],
    })
    categories = [{"id": CAT_A, "name": "a"}, {"id": CAT_B, "name": "b"}]
    return {"images": images, "annotations": annotations, "categories": categories}


def _uncompressed_counts(mask: np.ndarray) -> list[int]:
    """Run lengths of a binary mask in column-major order, starting with a run of zeros."""
    flat = mask.flatten(order="F")
    counts, value, run = [], 0, 0
    for pixel in flat:
        if pixel == value:
            run += 1
        else:
            counts.append(run)
            value, run = pixel, 1
    counts.append(run)
    return [int(c) for c in counts]


@pytest.fixture(scope="module")
def coco_gt() -> COCO:
    return make_coco_api(_ground_truth())


def _perfect_outputs(coco: COCO, with_masks: bool = True,
                     image_ids: list[int] | None = None) -> tuple[list[dict], list[int]]:
    """Mask R-CNN-style outputs that reproduce every non-crowd ground-truth instance."""
    outputs, ids = [], []
    for image_id in image_ids or sorted(coco.getImgIds()):
        info = coco.imgs[image_id]
        anns = [a for a in coco.imgToAnns[image_id] if not a["iscrowd"]]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        out = {
            "boxes": boxes,
            "labels": torch.tensor([CAT_TO_LABEL[a["category_id"]] for a in anns]),
            "scores": torch.linspace(0.95, 0.5, len(anns)),
        }
        if with_masks:
            binary = [coco.annToMask(a) for a in anns]
            masks = np.stack(binary) if binary else np.zeros((0, info["height"], info["width"]))
            # probabilities: 0.9 inside, 0.2 outside (thresholded at 0.5)
            out["masks"] = torch.from_numpy(0.2 + 0.7 * masks.astype(np.float32))[:, None]
        outputs.append(out)
        ids.append(image_id)
    return outputs, ids


def test_xyxy_to_xywh_and_category_mapping_are_explicit():
    outputs = [{
        "boxes": torch.tensor([[10.0, 20.0, 40.0, 60.0], [0.5, 1.5, 2.5, 9.5]]),
        "labels": torch.tensor([1, 2]),
        "scores": torch.tensor([0.9, 0.3]),
    }]
    results = detections_to_coco_results(outputs, [42], LABEL_TO_CAT)
    assert results == [
        {"image_id": 42, "category_id": 3, "bbox": [10.0, 20.0, 30.0, 40.0],
         "score": pytest.approx(0.9)},
        {"image_id": 42, "category_id": 7, "bbox": [0.5, 1.5, 2.0, 8.0],
         "score": pytest.approx(0.3)},
    ]
    assert all(type(v) is float for r in results for v in r["bbox"])
    with pytest.raises(KeyError, match="no category id"):
        detections_to_coco_results([{**outputs[0], "labels": torch.tensor([1, 5])}], [42],
                                   LABEL_TO_CAT)
    with pytest.raises(ValueError, match="image ids"):
        detections_to_coco_results(outputs, [1, 2], LABEL_TO_CAT)


def test_masks_become_json_serialisable_rle_thresholded():
    probs = torch.zeros(2, 1, 6, 5)
    probs[0, 0, 1:4, 2:5] = 0.8
    probs[1, 0, 0, 0] = 0.5  # not above the threshold
    outputs = [{"boxes": torch.tensor([[2.0, 1.0, 5.0, 4.0], [0.0, 0.0, 1.0, 1.0]]),
                "labels": torch.tensor([1, 1]), "scores": torch.tensor([0.9, 0.1]),
                "masks": probs}]
    results = detections_to_coco_results(outputs, [1], LABEL_TO_CAT)
    json.dumps(results)
    rle = results[0]["segmentation"]
    assert isinstance(rle["counts"], str) and rle["size"] == [6, 5]
    decoded = mask_util.decode({"size": rle["size"], "counts": rle["counts"].encode()})
    assert decoded.tolist() == (probs[0, 0] > 0.5).to(torch.uint8).tolist()
    assert mask_util.area({"size": [6, 5], "counts": results[1]["segmentation"]["counts"]}) == 0
    # (N, H, W) boolean masks are accepted too
    bool_out = [{**outputs[0], "masks": probs[:, 0] > 0.5}]
    assert detections_to_coco_results(bool_out, [1], LABEL_TO_CAT)[0]["segmentation"] == rle


def test_perfect_predictions_give_100_ap(coco_gt):
    outputs, ids = _perfect_outputs(coco_gt)
    results = detections_to_coco_results(outputs, ids, LABEL_TO_CAT)
    assert {r["category_id"] for r in results} == {CAT_A, CAT_B}
    metrics, text = evaluate_coco_with_summary(coco_gt, results, per_category=True)
    for iou_type in ("bbox", "segm"):
        for stat in ("AP", "AP50", "AP75"):
            assert metrics[f"{iou_type}_{stat}"] == pytest.approx(100.0), (iou_type, stat)
        assert metrics[f"{iou_type}_AP/{CAT_A}"] == pytest.approx(100.0)
        assert metrics[f"{iou_type}_AP/{CAT_B}"] == pytest.approx(100.0)
        assert set(f"{iou_type}_{s}" for s in STAT_NAMES) <= set(metrics)
    assert "IoU metric: bbox" in text and "IoU metric: segm" in text
    assert "Average Precision" in text


def test_detection_on_a_crowd_region_is_ignored(coco_gt):
    outputs, ids = _perfect_outputs(coco_gt)
    crowd = next(a for a in coco_gt.anns.values() if a["iscrowd"])
    k = ids.index(crowd["image_id"])
    x, y, w, h = crowd["bbox"]
    out = outputs[k]
    out["boxes"] = torch.cat([torch.tensor([[x, y, x + w, y + h]]), out["boxes"]])
    out["labels"] = torch.cat([torch.tensor([CAT_TO_LABEL[crowd["category_id"]]]), out["labels"]])
    out["scores"] = torch.cat([torch.tensor([0.99]), out["scores"]])
    crowd_mask = torch.from_numpy(coco_gt.annToMask(crowd)).float()[None, None]
    out["masks"] = torch.cat([crowd_mask, out["masks"]])
    metrics = evaluate_coco(coco_gt, detections_to_coco_results(outputs, ids, LABEL_TO_CAT))
    assert metrics["bbox_AP"] == pytest.approx(100.0)
    assert metrics["segm_AP"] == pytest.approx(100.0)
    # the same detection with the other category is a false positive ranked first
    out["labels"][0] = 3 - out["labels"][0]
    metrics = evaluate_coco(coco_gt, detections_to_coco_results(outputs, ids, LABEL_TO_CAT))
    assert metrics["bbox_AP"] < 100.0


def test_undefined_area_ranges_are_nan(coco_gt):
    outputs, ids = _perfect_outputs(coco_gt, with_masks=False)
    metrics = evaluate_coco(coco_gt, detections_to_coco_results(outputs, ids, LABEL_TO_CAT),
                            iou_types=("bbox",))
    assert math.isnan(metrics["bbox_APl"])  # every object here is under 96² pixels
    assert not any(k.startswith("segm_") for k in metrics)


def test_shifted_boxes_lower_ap(coco_gt):
    outputs, ids = _perfect_outputs(coco_gt, with_masks=False)
    for out in outputs:  # shift by a fifth of the width: IoU = 0.8 / 1.2 = 2/3 for each box
        width = out["boxes"][:, 2] - out["boxes"][:, 0]
        out["boxes"][:, 0::2] += width[:, None] / 5
    metrics = evaluate_coco(coco_gt, detections_to_coco_results(outputs, ids, LABEL_TO_CAT),
                            iou_types=("bbox",))
    assert metrics["bbox_AP50"] == pytest.approx(100.0)
    assert metrics["bbox_AP75"] == pytest.approx(0.0)
    # passes IoU thresholds 0.50, 0.55, 0.60, 0.65 of the ten
    assert metrics["bbox_AP"] == pytest.approx(40.0)


def test_wrong_category_gets_zero_ap_for_that_class(coco_gt):
    outputs, ids = _perfect_outputs(coco_gt)
    for out in outputs:  # every category-7 instance predicted as category 3
        out["labels"] = torch.ones_like(out["labels"])
    results = detections_to_coco_results(outputs, ids, LABEL_TO_CAT)
    metrics = evaluate_coco(coco_gt, results, per_category=True)
    for iou_type in ("bbox", "segm"):
        assert metrics[f"{iou_type}_AP/{CAT_B}"] == pytest.approx(0.0)
        assert metrics[f"{iou_type}_AP/{CAT_A}"] < 100.0  # the mislabelled ones are FPs
        assert metrics[f"{iou_type}_AP"] < 50.0 + 1e-6


def test_results_json_round_trips_through_loadres(coco_gt, tmp_path):
    outputs, ids = _perfect_outputs(coco_gt)
    results = detections_to_coco_results(outputs, ids, LABEL_TO_CAT)
    path = write_coco_results(results, tmp_path / "sub" / "results.json")
    assert path.exists() and [p.name for p in path.parent.iterdir()] == ["results.json"]
    assert json.loads(path.read_text()) == results
    with contextlib.redirect_stdout(io.StringIO()):
        loaded = coco_gt.loadRes(str(path))
    assert len(loaded.anns) == len(results)
    assert sorted(loaded.getCatIds()) == [CAT_A, CAT_B]
    reread = json.loads(path.read_text())
    assert evaluate_coco(coco_gt, reread)["segm_AP"] == pytest.approx(100.0)
    # evaluation does not mutate the caller's results (loadRes adds ids and areas in place)
    assert all(set(r) == {"image_id", "category_id", "bbox", "score", "segmentation"}
               for r in reread)


def test_write_is_atomic_on_failure(tmp_path):
    path = write_coco_results([], tmp_path / "r.json")
    with pytest.raises(TypeError):
        write_coco_results([{"image_id": object()}], path)
    assert json.loads(path.read_text()) == []
    assert os.listdir(tmp_path) == ["r.json"]


def test_empty_predictions_give_zeros(coco_gt):
    metrics = evaluate_coco(coco_gt, [])
    assert metrics and all(v == 0.0 for v in metrics.values())
    assert {"bbox_AP", "segm_AP", "bbox_APl", "segm_AR100"} <= set(metrics)
    outputs = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
                "scores": torch.zeros(0), "masks": torch.zeros(0, 1, 100, 120)}]
    results = detections_to_coco_results(outputs, [1], LABEL_TO_CAT)
    assert results == []
    assert evaluate_coco(coco_gt, results, iou_types=("segm",)) == \
        {f"segm_{s}": 0.0 for s in STAT_NAMES}


def test_img_ids_restrict_evaluation(coco_gt):
    outputs, ids = _perfect_outputs(coco_gt, with_masks=False, image_ids=[1])
    results = detections_to_coco_results(outputs, ids, LABEL_TO_CAT)
    partial = evaluate_coco(coco_gt, results, iou_types=("bbox",), img_ids=[1])
    assert partial["bbox_AP"] == pytest.approx(100.0)
    full = evaluate_coco(coco_gt, results, iou_types=("bbox",))
    assert full["bbox_AP"] < 100.0  # images 2 and 5 count as all misses
    with pytest.raises(ValueError, match="not in the ground truth"):
        evaluate_coco(coco_gt, results, img_ids=[99])
    with pytest.raises(ValueError, match="not in the ground truth"):
        evaluate_coco(coco_gt, [{**results[0], "image_id": 99}])


def test_segm_without_masks_is_an_error_and_bad_iou_type_rejected(coco_gt):
    outputs, ids = _perfect_outputs(coco_gt, with_masks=False)
    results = detections_to_coco_results(outputs, ids, LABEL_TO_CAT)
    with pytest.raises(ValueError, match="segmentation"):
        evaluate_coco(coco_gt, results)
    with pytest.raises(ValueError, match="unsupported"):
        evaluate_coco(coco_gt, results, iou_types=("keypoints",))


def test_verbose_prints_summary_only(coco_gt, capsys):
    outputs, ids = _perfect_outputs(coco_gt, with_masks=False)
    results = detections_to_coco_results(outputs, ids, LABEL_TO_CAT)
    evaluate_coco(coco_gt, results, iou_types=("bbox",))
    assert capsys.readouterr().out == ""
    evaluate_coco(coco_gt, results, iou_types=("bbox",), verbose=True)
    out = capsys.readouterr().out
    assert "Average Precision" in out and "Running per image evaluation" not in out
