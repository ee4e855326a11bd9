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

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from dgmn.data.cityscapes_files import IMAGE_SUFFIX, TARGET_SUFFIXES, list_samples, load_sample
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
    "IMAGE_SUFFIX",
    "NUM_CLASSES",
    "TARGET_SUFFIXES",
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

class CityscapesSegmentation(Dataset):
    """Cityscapes (or the synthetic Cityscapes) for semantic segmentation.

    Args:
        root: dataset root in the official layout.
        split: ``"train"``, ``"val"`` or ``"test"``.
        target_type: ``"labelTrainIds"`` (the preprocessed files) or ``"labelIds"`` (the raw
            files, mapped to trainIds on load with cityscapesscripts' table).
        transforms: a callable ``(image, mask) -> (image, mask)``, e.g.
            :func:`dgmn.data.transforms.segmentation_train_transform`.
        cache: keep each decoded sample in memory after its first read (the transforms still
            run per item). For small sets read for many epochs, like the embedded synthetic
            ones (2 MB decoded); the real Cityscapes train split is ~18 GB decoded.

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
        cache: bool = False,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.target_type = target_type
        self.transforms = transforms
        self.samples = list_samples(self.root, split, target_type)
        self.ignore_index = IGNORE_INDEX
        self.num_classes = NUM_CLASSES
        self._decoded: dict[int, tuple[Any, Any]] | None = {} if cache else None

    @property
    def classes(self) -> tuple[str, ...]:
        """The 19 trainId class names (needs cityscapesscripts)."""
        return train_id_names()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        image, label = self._load(index)
        img = tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1).contiguous())
        mask = tv_tensors.Mask(torch.from_numpy(label))
        if self.transforms is not None:
            img, mask = self.transforms(img, mask)
        return img, tv_tensors.Mask(mask.to(torch.int64))

    def _load(self, index: int) -> tuple[Any, Any]:
        """The decoded ``(image (H, W, 3) uint8, label (H, W))`` arrays of sample ``index``."""
        if self._decoded is not None and index in self._decoded:
            return self._decoded[index]
        image_path, label_path = self.samples[index]
        sample = load_sample(image_path, label_path, self.target_type)
        if self._decoded is not None:
            self._decoded[index] = sample
        return sample

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
                f"target_type={self.target_type!r}, n={len(self)})")
