"""Inference loops shared by validation during training and the evaluate stage.

Segmentation: full-image (or sliding-window) logits, optionally averaged over scales and
horizontal flips, accumulated into a confusion matrix. Detection: Mask R-CNN predictions
converted to COCO results. Both run on a subset of indices so that ranks can split the work.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dgmn.data.transforms import sliding_windows
from dgmn.metrics.coco import detections_to_coco_results
from dgmn.metrics.segmentation import confusion_matrix


def _logits(model: nn.Module, images: Tensor, window: Sequence[int] | None) -> Tensor:
    """``(B, N, H, W)`` logits of ``(B, 3, H, W)`` images, windowed if ``window`` is set."""
    if window is None:
        return model(images)
    height, width = images.shape[-2:]
    total = count = None
    for top, left, bottom, right in sliding_windows(height, width, window,
                                                    [max(1, s * 2 // 3) for s in window]):
        part = model(images[..., top:bottom, left:right])
        if total is None:
            total = images.new_zeros(images.shape[0], part.shape[1], height, width)
            count = images.new_zeros(1, 1, height, width)
        total[..., top:bottom, left:right] += part
        count[..., top:bottom, left:right] += 1
    return total / count


@torch.no_grad()
def segment_batch(model: nn.Module, images: Tensor, scales: Sequence[float] = (1.0,),
                  flip: bool = False, window: Sequence[int] | None = None) -> Tensor:
    """Class probabilities ``(B, N, H, W)`` of normalised ``(B, 3, H, W)`` images, averaged
    over ``scales`` and (with ``flip``) horizontal flips (the paper's "MS" inference)."""
    height, width = images.shape[-2:]
    probs = None
    for scale in scales:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        scaled = images if scale == 1.0 else F.interpolate(images, size=size, mode="bilinear",
                                                           align_corners=False)
        for flipped in ((False, True) if flip else (False,)):
            view = scaled.flip(-1) if flipped else scaled
            logits = _logits(model, view, window)
            logits = logits.flip(-1) if flipped else logits
            logits = F.interpolate(logits, size=(height, width), mode="bilinear",
                                   align_corners=False)
            p = logits.float().softmax(1)
            probs = p if probs is None else probs + p
    assert probs is not None
    return probs


def segment(model: nn.Module, image: Tensor, scales: Sequence[float] = (1.0,),
            flip: bool = False, window: Sequence[int] | None = None) -> Tensor:
    """:func:`segment_batch` of one ``(3, H, W)`` image: ``(N, H, W)``."""
    return segment_batch(model, image.unsqueeze(0), scales, flip, window)[0]


def image_batches(dataset: Any, indices: Iterable[int], batch_size: int
                  ) -> Iterator[tuple[list[int], Tensor, Tensor]]:
    """``(indices, images (B, 3, H, W), masks (B, H, W))`` of up to ``batch_size`` consecutive
    items of ``dataset[indices]``; a batch ends early where the image size changes (real data
    keeps its own sizes; the synthetic sets have one)."""
    batch: list[tuple[int, Tensor, Tensor]] = []
    for index in indices:
        image, mask = dataset[index]
        if batch and (len(batch) == batch_size or batch[0][1].shape != image.shape):
            yield _stacked(batch)
            batch = []
        batch.append((index, image, mask))
    if batch:
        yield _stacked(batch)


def _stacked(batch: list[tuple[int, Tensor, Tensor]]) -> tuple[list[int], Tensor, Tensor]:
    indices, images, masks = zip(*batch, strict=True)
    return (list(indices), torch.stack([image.as_subclass(Tensor) for image in images]),
            torch.stack([mask.as_subclass(Tensor) for mask in masks]))


@torch.no_grad()
def segmentation_confusion(model: nn.Module, dataset: Any, indices: Iterable[int],
                           num_classes: int, device: torch.device, ignore_index: int = 255,
                           scales: Sequence[float] = (1.0,), flip: bool = False,
                           window: Sequence[int] | None = None, batch_size: int = 1
                           ) -> Tensor:
    """Confusion matrix ``(N, N)`` (int64, on CPU) over ``dataset[indices]``, inferring up to
    ``batch_size`` same-size images at once."""
    was_training = model.training
    model.eval()
    total = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for _, images, masks in image_batches(dataset, indices, batch_size):
        predictions = segment_batch(model, images.to(device), scales, flip, window).argmax(1)
        total += confusion_matrix(predictions.cpu(), masks, num_classes, ignore_index)
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
