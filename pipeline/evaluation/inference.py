"""Inference loops shared by validation during training and the evaluate stage.

Segmentation: full-image (or sliding-window) logits, optionally averaged over scales and
horizontal flips, accumulated into a confusion matrix. Detection: Mask R-CNN predictions
converted to COCO results. Both run on a subset of indices so that ranks can split the work.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dgmn.data.transforms import sliding_windows
from dgmn.metrics.coco import detections_to_coco_results
from dgmn.metrics.segmentation import confusion_matrix


def _logits(model: nn.Module, image: Tensor, window: Sequence[int] | None) -> Tensor:
    """``(1, N, H, W)`` logits of one ``(1, 3, H, W)`` image, windowed if ``window`` is set."""
    if window is None:
        return model(image)
    height, width = image.shape[-2:]
    total = count = None
    for top, left, bottom, right in sliding_windows(height, width, window,
                                                    [max(1, s * 2 // 3) for s in window]):
        part = model(image[..., top:bottom, left:right])
        if total is None:
            total = image.new_zeros(1, part.shape[1], height, width)
            count = image.new_zeros(1, 1, height, width)
        total[..., top:bottom, left:right] += part
        count[..., top:bottom, left:right] += 1
    return total / count


@torch.no_grad()
def segment(model: nn.Module, image: Tensor, scales: Sequence[float] = (1.0,),
            flip: bool = False, window: Sequence[int] | None = None) -> Tensor:
    """Class probabilities ``(N, H, W)`` of one normalised ``(3, H, W)`` image, averaged over
    ``scales`` and (with ``flip``) horizontal flips (the paper's "MS" inference)."""
    image = image.unsqueeze(0)
    height, width = image.shape[-2:]
    probs = None
    for scale in scales:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        scaled = image if scale == 1.0 else F.interpolate(image, size=size, mode="bilinear",
                                                          align_corners=False)
        for flipped in ((False, True) if flip else (False,)):
            view = scaled.flip(-1) if flipped else scaled
            logits = _logits(model, view, window)
            logits = logits.flip(-1) if flipped else logits
            logits = F.interpolate(logits, size=(height, width), mode="bilinear",
                                   align_corners=False)
            p = logits.float().softmax(1)[0]
            probs = p if probs is None else probs + p
    assert probs is not None
    return probs


@torch.no_grad()
def segmentation_confusion(model: nn.Module, dataset: Any, indices: Iterable[int],
                           num_classes: int, device: torch.device, ignore_index: int = 255,
                           scales: Sequence[float] = (1.0,), flip: bool = False,
                           window: Sequence[int] | None = None) -> Tensor:
    """Confusion matrix ``(N, N)`` (int64, on CPU) over ``dataset[indices]``."""
    was_training = model.training
    model.eval()
    total = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for index in indices:
        image, mask = dataset[index]
        probs = segment(model, image.to(device), scales, flip, window)
        total += confusion_matrix(probs.argmax(0).cpu(), mask.as_subclass(Tensor),
                                  num_classes, ignore_index)
    model.train(was_training)
    return total


@torch.no_grad()
def detection_results(model: nn.Module, dataset: Any, indices: Iterable[int],
                      device: torch.device) -> list[dict[str, Any]]:
    """COCO-format results (boxes and masks, original category ids) of ``dataset[indices]``."""
    was_training = model.training
    model.eval()
    results: list[dict[str, Any]] = []
    for index in indices:
        image, target = dataset[index]
        output = model([image.to(device)])[0]
        output = {k: v.float().cpu() if v.is_floating_point() else v.cpu()
                  for k, v in output.items()}
        results += detections_to_coco_results([output], [int(target["image_id"])],
                                              dataset.label_to_cat)
    model.train(was_training)
    return results
