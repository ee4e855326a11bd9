"""Paired image/target transforms on :mod:`torchvision.transforms.v2`.

Segmentation (Cityscapes, as in mmsegmentation's recipe): random rescale by a factor in
``[0.5, 2.0]`` of the input size, horizontal flip, normalisation, then a random crop padded with
the mean colour (0 after normalisation) and the ignore index. Detection (COCO, as in Mask R-CNN's
1x schedule): shortest side 800, longest <= 1333, flip; images stay in ``[0, 1]`` because
torchvision's detection models normalise internally. Sizes are arguments so CPU tests can use
tiny ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


class RandomScale(v2.Transform):
    """Resize by a factor drawn uniformly from ``scale_range``, relative to the input's own size.

    Images use bilinear interpolation (antialiased), masks nearest, boxes are scaled.
    """

    def __init__(self, scale_range: Sequence[float] = (0.5, 2.0)) -> None:
        super().__init__()
        low, high = (float(s) for s in scale_range)
        if not 0 < low <= high:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range}")
        self.scale_range = (low, high)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        scale = float(torch.empty(1).uniform_(*self.scale_range))
        return {"size": [max(1, round(height * scale)), max(1, round(width * scale))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.resize, inpt, size=params["size"], antialias=True)


def _to_float_and_normalize(mean: Sequence[float], std: Sequence[float]) -> list[v2.Transform]:
    return [
        v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64,
                    "others": None}, scale=True),
        v2.Normalize(mean=list(mean), std=list(std)),
    ]


def segmentation_train_transform(
    crop_size: int | Sequence[int] = (769, 769),
    scale_range: Sequence[float] = (0.5, 2.0),
    hflip_prob: float = 0.5,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    ignore_index: int = 255,
) -> v2.Compose:
    """Train transform for ``(Image uint8 (3,H,W), Mask (H,W))`` pairs.

    Output: normalised ``float32 (3, *crop_size)`` image and ``int64 (*crop_size)`` mask; where the
    rescaled image is smaller than the crop, the image is padded with 0 (the mean colour) and the
    mask with ``ignore_index``.
    """
    return v2.Compose([
        RandomScale(scale_range),
        v2.RandomHorizontalFlip(hflip_prob),
        *_to_float_and_normalize(mean, std),
        v2.RandomCrop(_pair(crop_size), pad_if_needed=True,
                      fill={tv_tensors.Image: 0.0, tv_tensors.Mask: ignore_index, "others": 0}),
    ])


def segmentation_eval_transform(
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """Full-image evaluation transform: ``float32`` normalised image, ``int64`` mask, no resizing
    (see :func:`sliding_windows` for windowed inference on large images)."""
    return v2.Compose(_to_float_and_normalize(mean, std))


def _sanitize() -> v2.SanitizeBoundingBoxes:
    # drop degenerate boxes together with their labels, masks, area and iscrowd entries
    def getter(inputs: Any) -> tuple[torch.Tensor, ...]:
        target = inputs[1]
        return tuple(target[k] for k in ("labels", "area", "iscrowd") if k in target)

    return v2.SanitizeBoundingBoxes(min_size=1.0, labels_getter=getter)


def detection_train_transform(
    min_size: int | Sequence[int] = 800,
    max_size: int = 1333,
    hflip_prob: float = 0.5,
) -> v2.Compose:
    """Train transform for ``(Image, target)`` pairs of :class:`~dgmn.data.coco.CocoInstances`.

    Resizes so the shortest side is ``min_size`` (one drawn at random if a sequence, for
    multi-scale training) with the longest side at most ``max_size``; flips; converts the image to
    ``float32`` in ``[0, 1]``; drops boxes that became degenerate.
    """
    sizes = [min_size] if isinstance(min_size, int) else list(min_size)
    return v2.Compose([
        v2.RandomShortestSize(min_size=sizes, max_size=max_size, antialias=True),
        v2.RandomHorizontalFlip(hflip_prob),
        v2.ToDtype(torch.float32, scale=True),
        _sanitize(),
    ])


def detection_eval_transform(min_size: int = 800, max_size: int = 1333) -> v2.Compose:
    """Evaluation transform: the same resize without randomness (``target["orig_size"]`` keeps the
    size to map predictions back)."""
    return v2.Compose([
        v2.Resize(size=min_size, max_size=max_size, antialias=True),
        v2.ToDtype(torch.float32, scale=True),
        _sanitize(),
    ])


def sliding_windows(
    height: int, width: int, crop_size: int | Sequence[int], stride: int | Sequence[int]
) -> list[tuple[int, int, int, int]]:
    """Windows ``(top, left, bottom, right)`` of at most ``crop_size`` covering a ``height x width``
    image with the given stride; the last window in each direction is aligned to the border (as in
    mmsegmentation's ``slide`` inference). An image smaller than the crop gives one window."""
    crop_h, crop_w = _pair(crop_size)
    stride_h, stride_w = _pair(stride)
    if min(crop_h, crop_w, stride_h, stride_w) <= 0:
        raise ValueError("crop_size and stride must be positive")
    rows = max(math.ceil((height - crop_h) / stride_h), 0) + 1
    cols = max(math.ceil((width - crop_w) / stride_w), 0) + 1
    windows = []
    for r in range(rows):
        for c in range(cols):
            bottom = min(r * stride_h + crop_h, height)
            right = min(c * stride_w + crop_w, width)
            top, left = max(bottom - crop_h, 0), max(right - crop_w, 0)
            windows.append((top, left, bottom, right))
    return windows
