"""COCO detection / instance-segmentation evaluation (box AP and mask AP, as in the paper).

Shared by training-time validation and the evaluate stage:

1. :func:`detections_to_coco_results` turns torchvision Mask R-CNN outputs (XYXY boxes in
   original-image pixels, contiguous labels ``1..K``, mask probabilities) into the official
   COCO results format (XYWH boxes, original category ids, RLE masks);
2. :func:`evaluate_coco` runs pycocotools' ``COCOeval`` on them and returns the 12 standard
   numbers per IoU type, **in percent** (the paper's unit): ``bbox_AP``, ``bbox_AP50``,
   ``bbox_AP75``, ``bbox_APs``, ``bbox_APm``, ``bbox_APl``, ``bbox_AR1``, ``bbox_AR10``,
   ``bbox_AR100``, ``bbox_ARs``, ``bbox_ARm``, ``bbox_ARl`` and the same with ``segm_``;
3. :func:`write_coco_results` writes the results JSON (the official submission format)
   atomically.

pycocotools is imported lazily (it belongs to the ``pipeline`` extra).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dgmn._io import atomic_write_bytes

#: IoU types this module evaluates (pycocotools' names).
IOU_TYPES: tuple[str, ...] = ("bbox", "segm")

#: Names of ``COCOeval.stats[0..11]``, in order.
STAT_NAMES: tuple[str, ...] = (
    "AP", "AP50", "AP75", "APs", "APm", "APl",
    "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
)


def _pycocotools() -> tuple[Any, Any]:
    """``(pycocotools.mask, pycocotools.cocoeval.COCOeval)``, with a helpful error if absent."""
    try:
        from pycocotools import mask as mask_util
        from pycocotools.cocoeval import COCOeval
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("COCO evaluation needs pycocotools "
                          "(pip install 'dgmn[pipeline]' or pycocotools==2.0.11)") from err
    return mask_util, COCOeval


def _to_numpy(x: Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """RLE of one binary ``(H, W)`` mask, JSON-serialisable (``counts`` as ``str``)."""
    mask_util, _ = _pycocotools()
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)[:, :, None]))[0]
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def detections_to_coco_results(
    outputs: Sequence[Mapping[str, Tensor]],
    image_ids: Sequence[int],
    label_to_category_id: Mapping[int, int],
    mask_threshold: float = 0.5,
) -> list[dict[str, Any]]:
    """Convert detection-model outputs to COCO results dicts.

    Args:
        outputs: one dict per image, as torchvision's Mask R-CNN returns in eval mode:
            ``boxes`` ``(N, 4)`` XYXY in original-image pixels, ``labels`` ``(N,)`` contiguous
            ``1..K``, ``scores`` ``(N,)`` and optionally ``masks`` ``(N, 1, H, W)`` (or
            ``(N, H, W)``) probabilities in ``[0, 1]`` (boolean masks are accepted too).
        image_ids: the COCO ``image_id`` of each output, same length as ``outputs``.
        label_to_category_id: contiguous label → original COCO category id.
        mask_threshold: a pixel belongs to the instance where its probability is above this.

    Returns:
        ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]``, with
        ``"segmentation"`` (an RLE whose ``counts`` is a ``str``) when masks were given.
    """
    if len(outputs) != len(image_ids):
        raise ValueError(f"{len(outputs)} outputs but {len(image_ids)} image ids")
    results: list[dict[str, Any]] = []
    for output, image_id in zip(outputs, image_ids, strict=True):
        boxes = _to_numpy(output["boxes"]).astype(np.float64).reshape(-1, 4)
        labels = _to_numpy(output["labels"]).astype(np.int64).reshape(-1)
        scores = _to_numpy(output["scores"]).astype(np.float64).reshape(-1)
        if not len(boxes) == len(labels) == len(scores):
            raise ValueError(f"image {image_id}: {len(boxes)} boxes, {len(labels)} labels, "
                             f"{len(scores)} scores")
        unknown = sorted({int(lbl) for lbl in labels} - {int(k) for k in label_to_category_id})
        if unknown:
            raise KeyError(f"image {image_id}: labels {unknown} have no category id "
                           f"(known labels: {sorted(label_to_category_id)})")
        masks = None
        if output.get("masks") is not None:
            masks_t = output["masks"]
            masks_t = masks_t.float() if masks_t.dtype == torch.bool else masks_t
            masks = _to_numpy(masks_t)
            if masks.ndim == 4:
                if masks.shape[1] != 1:
                    raise ValueError(f"image {image_id}: masks of shape {masks.shape}, "
                                     "expected (N, 1, H, W) or (N, H, W)")
                masks = masks[:, 0]
            if masks.shape[0] != len(boxes):
                raise ValueError(f"image {image_id}: {masks.shape[0]} masks for "
                                 f"{len(boxes)} boxes")
            masks = masks > mask_threshold
        xywh = boxes.copy()
        xywh[:, 2:] -= xywh[:, :2]
        for i in range(len(boxes)):
            result: dict[str, Any] = {
                "image_id": int(image_id),
                "category_id": int(label_to_category_id[int(labels[i])]),
                "bbox": [float(v) for v in xywh[i]],
                "score": float(scores[i]),
            }
            if masks is not None:
                result["segmentation"] = encode_mask(masks[i])
            results.append(result)
    return results


def _empty_metrics(iou_types: Iterable[str]) -> dict[str, float]:
    return {f"{t}_{name}": 0.0 for t in iou_types for name in STAT_NAMES}


def _results_for(iou_type: str, results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Copies (``loadRes`` mutates its input) holding only what ``iou_type`` needs.

    For ``segm`` the box is dropped so that ``loadRes`` takes the detection's area from its
    mask (it decides the small/medium/large range), as the official evaluation does.
    """
    if iou_type == "bbox":
        return [{k: v for k, v in r.items() if k != "segmentation"} for r in results]
    return [{k: v for k, v in r.items() if k != "bbox"} for r in results if "segmentation" in r]


def _per_category_ap(evaluator: Any, iou_type: str) -> dict[str, float]:
    """AP (IoU 0.5:0.95, all areas, 100 detections) of each category, in percent."""
    params = evaluator.params
    area = params.areaRngLbl.index("all")
    dets = params.maxDets.index(max(params.maxDets))
    precision = evaluator.eval["precision"][:, :, :, area, dets]  # (T, R, K)
    out: dict[str, float] = {}
    for k, category_id in enumerate(params.catIds):
        values = precision[:, :, k]
        values = values[values > -1]
        out[f"{iou_type}_AP/{category_id}"] = 100.0 * float(values.mean()) if values.size \
            else math.nan
    return out


def evaluate_coco_with_summary(
    coco_gt: Any,
    results: Sequence[Mapping[str, Any]],
    iou_types: Sequence[str] = IOU_TYPES,
    img_ids: Iterable[int] | None = None,
    per_category: bool = False,
) -> tuple[dict[str, float], str]:
    """:func:`evaluate_coco` plus ``COCOeval.summarize()``'s text (all IoU types, in order)."""
    _, COCOeval = _pycocotools()
    iou_types = tuple(iou_types)
    bad = [t for t in iou_types if t not in IOU_TYPES]
    if bad:
        raise ValueError(f"unsupported iou_types {bad}; choose from {IOU_TYPES}")
    gt_ids = set(coco_gt.getImgIds())
    eval_ids = sorted(gt_ids if img_ids is None else {int(i) for i in img_ids})
    missing = sorted(set(eval_ids) - gt_ids)
    if missing:
        raise ValueError(f"img_ids not in the ground truth: {missing[:10]}")
    strangers = sorted({int(r["image_id"]) for r in results} - gt_ids)
    if strangers:
        raise ValueError(f"results for image ids not in the ground truth: {strangers[:10]}")

    metrics: dict[str, float] = {}
    texts: list[str] = []
    for iou_type in iou_types:
        dets = _results_for(iou_type, results)
        if iou_type == "segm" and results and not dets:
            raise ValueError("iou_types includes 'segm' but no result has a 'segmentation'")
        if not dets or not eval_ids:
            # loadRes cannot index an empty list; nothing detected means AP = AR = 0.
            metrics.update(_empty_metrics([iou_type]))
            if per_category:
                metrics.update({f"{iou_type}_AP/{c}": 0.0 for c in sorted(coco_gt.getCatIds())})
            texts.append(f"{iou_type}: no detections, all metrics 0\n")
            continue
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            coco_dt = coco_gt.loadRes(dets)
            evaluator = COCOeval(coco_gt, coco_dt, iouType=iou_type)
            evaluator.params.imgIds = eval_ids
            evaluator.evaluate()
            evaluator.accumulate()
        summary = io.StringIO()
        with contextlib.redirect_stdout(summary):
            evaluator.summarize()
        texts.append(f"IoU metric: {iou_type}\n{summary.getvalue()}")
        for name, value in zip(STAT_NAMES, evaluator.stats, strict=True):
            # pycocotools reports -1 where a number is undefined (e.g. no small objects)
            metrics[f"{iou_type}_{name}"] = 100.0 * float(value) if value >= 0 else math.nan
        if per_category:
            metrics.update(_per_category_ap(evaluator, iou_type))
    return metrics, "".join(texts)


def evaluate_coco(
    coco_gt: Any,
    results: Sequence[Mapping[str, Any]],
    iou_types: Sequence[str] = IOU_TYPES,
    img_ids: Iterable[int] | None = None,
    verbose: bool = False,
    per_category: bool = False,
) -> dict[str, float]:
    """COCO AP/AR of ``results`` against ``coco_gt`` (a ``pycocotools.coco.COCO``), in percent.

    Args:
        coco_gt: the ground truth.
        results: COCO results dicts (:func:`detections_to_coco_results`).
        iou_types: any of ``"bbox"``, ``"segm"``.
        img_ids: evaluate on these images only (partial validation); default all images of
            ``coco_gt``. An image in the set without detections counts as all misses.
        verbose: print ``COCOeval.summarize()``'s table (pycocotools' own printing is always
            captured).
        per_category: also return ``"<iou_type>_AP/<category_id>"`` (NaN for a category
            without ground truth in the evaluated images).

    Returns:
        ``{"<iou_type>_<stat>": value}`` for the 12 stats of :data:`STAT_NAMES`, in percent.
        NaN where pycocotools finds a number undefined (no ground truth in an area range);
        all zeros when there are no detections.
    """
    metrics, text = evaluate_coco_with_summary(coco_gt, results, iou_types, img_ids,
                                               per_category=per_category)
    if verbose:
        print(text, end="")
    return metrics


def write_coco_results(results: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Write ``results`` as COCO results JSON atomically (temp file in the same dir + rename)."""
    return atomic_write_bytes(path, json.dumps(list(results)).encode())
