"""The Cityscapes file layout: listing ``(image, label)`` pairs of a split and decoding them with
checks. numpy/PIL only (no torch), shared by the dataset and the pipeline's preprocess stage."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dgmn.data.errors import DatasetError
from dgmn.data.io import check_same_size, read_label, read_rgb
from dgmn.data.labels import check_train_ids, label_ids_to_train_ids

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
