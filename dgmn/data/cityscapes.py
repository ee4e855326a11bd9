"""Cityscapes semantic segmentation dataset.

The labelId → trainId table comes from ``cityscapesscripts.helpers.labels`` via
:mod:`dgmn.data.labels` (imported lazily: only ``target_type="labelIds"`` and the class names need
it). Layout, as on the official site::

    <root>/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png       (raw)
    <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png  (preprocessed)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from dgmn.data.errors import DatasetError
from dgmn.data.io import check_same_size, read_label, read_rgb
from dgmn.data.labels import (
    IGNORE_INDEX,
    NUM_CLASSES,
    check_train_ids,
    label_id_of,
    label_id_to_train_id,
    label_ids_to_train_ids,
    train_id_names,
    train_id_of,
)

__all__ = [
    "IGNORE_INDEX",
    "NUM_CLASSES",
    "CityscapesSegmentation",
    "check_train_ids",
    "label_id_of",
    "label_id_to_train_id",
    "label_ids_to_train_ids",
    "list_samples",
    "load_sample",
    "train_id_names",
    "train_id_of",
]

IMAGE_SUFFIX = "_leftImg8bit.png"
TARGET_SUFFIXES = {"labelTrainIds": "_gtFine_labelTrainIds.png", "labelIds": "_gtFine_labelIds.png"}


def list_samples(root: str | os.PathLike, split: str, target_type: str = "labelTrainIds"
                 ) -> list[tuple[Path, Path]]:
    """Sorted ``(image, label)`` pairs of a split; raises if the split is missing or empty or an
    image has no label file."""
    if target_type not in TARGET_SUFFIXES:
        raise ValueError(f"target_type must be one of {sorted(TARGET_SUFFIXES)}, "
                         f"got {target_type!r}")
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root not found")
    image_dir = root / "leftImg8bit" / split
    if not image_dir.is_dir():
        raise DatasetError(f"{image_dir}: split directory not found")
    images = sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}"))
    if not images:
        raise DatasetError(f"{image_dir}: split {split!r} is empty (no *{IMAGE_SUFFIX} files)")
    samples = []
    for image in images:
        stem = image.name.removesuffix(IMAGE_SUFFIX)
        label = root / "gtFine" / split / image.parent.name / (stem + TARGET_SUFFIXES[target_type])
        if not label.is_file():
            raise DatasetError(f"{label}: label file missing for image {image}")
        samples.append((image, label))
    return samples


def load_sample(image_path: Path, label_path: Path, target_type: str = "labelTrainIds"
                ) -> tuple[np.ndarray, np.ndarray]:
    """Decode and check one pair: ``(H, W, 3) uint8`` image, ``(H, W) uint8`` trainIds."""
    image = read_rgb(image_path)
    label = read_label(label_path)
    check_same_size(image_path, image.shape[:2], label_path, label.shape)
    if target_type == "labelIds":
        label = label_ids_to_train_ids(label, label_path)
    else:
        check_train_ids(label, label_path)
    return image, label


class CityscapesSegmentation(Dataset):
    """Cityscapes (or the synthetic Cityscapes) for semantic segmentation.

    Args:
        root: dataset root in the official layout.
        split: ``"train"``, ``"val"`` or ``"test"``.
        target_type: ``"labelTrainIds"`` (the preprocessed files) or ``"labelIds"`` (the raw
            files, mapped to trainIds on load with cityscapesscripts' table).
        transforms: a callable ``(image, mask) -> (image, mask)``, e.g.
            :func:`dgmn.data.transforms.segmentation_train_transform`.

    Returns (per item):
        ``image``: :class:`~torchvision.tv_tensors.Image` ``(3, H, W)`` (``uint8`` untransformed),
        ``mask``: :class:`~torchvision.tv_tensors.Mask` ``(H, W) int64`` trainIds, 255 = ignore.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        target_type: str = "labelTrainIds",
        transforms: Callable[[Any, Any], tuple[Any, Any]] | None = None,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.target_type = target_type
        self.transforms = transforms
        self.samples = list_samples(self.root, split, target_type)
        self.ignore_index = IGNORE_INDEX
        self.num_classes = NUM_CLASSES

    @property
    def classes(self) -> tuple[str, ...]:
        """The 19 trainId class names (needs cityscapesscripts)."""
        return train_id_names()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        image_path, label_path = self.samples[index]
        image, label = load_sample(image_path, label_path, self.target_type)
        img = tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1).contiguous())
        mask = tv_tensors.Mask(torch.from_numpy(label))
        if self.transforms is not None:
            img, mask = self.transforms(img, mask)
        return img, tv_tensors.Mask(mask.to(torch.int64))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
                f"target_type={self.target_type!r}, n={len(self)})")
