"""mIoU by the Cityscapes protocol against explicit per-pixel counting."""

from __future__ import annotations

import math

import pytest
import torch

from dgmn.metrics.segmentation import confusion_matrix, iou_per_class, mean_iou, pixel_accuracy


def test_confusion_and_iou_match_explicit_counting():
    num_classes = 5
    target = torch.randint(0, num_classes, (3, 17, 19))
    target[0, :4] = 255
    pred = torch.randint(0, num_classes, (3, 17, 19))
    cm = confusion_matrix(pred, target, num_classes)
    explicit = [[0] * num_classes for _ in range(num_classes)]
    for t, p in zip(target.flatten().tolist(), pred.flatten().tolist(), strict=True):
        if t != 255:
            explicit[t][p] += 1
    assert cm.tolist() == explicit
    for c in range(num_classes):
        tp = explicit[c][c]
        fp = sum(explicit[r][c] for r in range(num_classes)) - tp
        fn = sum(explicit[c]) - tp
        assert iou_per_class(cm)[c].item() == pytest.approx(tp / (tp + fp + fn))
    assert pixel_accuracy(cm) == pytest.approx(sum(explicit[c][c] for c in range(5)) / cm.sum())


def test_absent_classes_are_left_out_of_the_mean():
    target = torch.tensor([[0, 0, 1, 255]])
    pred = torch.tensor([[0, 1, 1, 3]])
    cm = confusion_matrix(pred, target, num_classes=4)
    ious = iou_per_class(cm)
    assert ious[0].item() == pytest.approx(0.5) and ious[1].item() == pytest.approx(0.5)
    assert math.isnan(ious[2].item()) and math.isnan(ious[3].item())  # 3 predicted on ignore
    assert mean_iou(cm) == pytest.approx(0.5)


def test_out_of_range_ids_are_named():
    with pytest.raises(ValueError, match="target"):
        confusion_matrix(torch.zeros(4, dtype=torch.long), torch.tensor([0, 1, 19, 2]), 19)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(torch.zeros(4), torch.zeros(5), 19)
