"""Semantic-segmentation metrics by the Cityscapes protocol: confusion matrix, IoU, mIoU.

Pixels whose target is ``ignore_index`` (255 for trainIds) are skipped; a class that appears
neither in the targets nor in the predictions has an undefined IoU (NaN) and is left out of
the mean, as the official script does.
"""

from __future__ import annotations

import torch
from torch import Tensor


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int,
                     ignore_index: int = 255) -> Tensor:
    """``(num_classes, num_classes)`` int64 counts, rows = ground truth, columns = prediction.

    Args:
        pred: integer class map of any shape, values in ``[0, num_classes)``.
        target: same shape; ``ignore_index`` pixels are skipped.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    keep = target != ignore_index
    truth, guess = target[keep].long(), pred[keep].long()
    for name, values in (("target", truth), ("pred", guess)):
        if values.numel() and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} holds class ids outside [0, {num_classes}) "
                             f"(min {values.min().item()}, max {values.max().item()})")
    counts = torch.bincount(truth * num_classes + guess, minlength=num_classes ** 2)
    return counts.view(num_classes, num_classes)


def iou_per_class(confusion: Tensor) -> Tensor:
    """IoU of each class, ``TP / (TP + FP + FN)``; NaN where the class never occurs."""
    confusion = confusion.double()
    true_positive = confusion.diagonal()
    union = confusion.sum(0) + confusion.sum(1) - true_positive
    return torch.where(union > 0, true_positive / union.clamp(min=1), torch.nan)


def mean_iou(confusion: Tensor) -> float:
    """Mean IoU over the classes that occur (NaN-aware mean)."""
    return float(torch.nanmean(iou_per_class(confusion)))


def pixel_accuracy(confusion: Tensor) -> float:
    """Fraction of non-ignored pixels labelled correctly."""
    total = confusion.sum()
    return float(confusion.diagonal().sum() / total) if total > 0 else float("nan")
