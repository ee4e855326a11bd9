"""COCO-style instance segmentation dataset (torchvision detection targets with masks).

Layout, as on the official site::

    <root>/<split>2017/<file_name>                         (images)
    <root>/annotations/instances_<split>2017.json          (instances)

Category ids in COCO are sparse (1..90 for 80 classes); models see contiguous labels
``1..K`` (``0`` is background in torchvision's detection models), in increasing category-id
order (:func:`~dgmn.data.coco_format.contiguous_category_ids`). pycocotools is imported lazily.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from dgmn.data.coco_format import (
    annotation_path,
    contiguous_category_ids,
    image_dir,
    load_coco_json,
    make_coco_api,
    validate_coco,
)
from dgmn.data.errors import DatasetError
from dgmn.data.io import read_rgb
from dgmn.data.masks import segmentation_to_mask
from dgmn.data.paths import confined_path

__all__ = [
    "CocoInstances",
    "annotation_path",
    "collate_detection",
    "contiguous_category_ids",
    "image_dir",
    "load_coco_json",
    "make_coco_api",
    "validate_coco",
]

class CocoInstances(Dataset):
    """COCO 2017 (or the synthetic COCO) instances as torchvision detection targets.

    Args:
        root: dataset root in the official layout.
        split: ``"train"`` or ``"val"`` (files ``instances_<split>2017.json`` and ``<split>2017/``).
        transforms: a callable ``(image, target) -> (image, target)``, e.g.
            :func:`dgmn.data.transforms.detection_train_transform`.
        include_crowd: keep ``iscrowd=1`` regions in the targets (off for training, as usual).
        remove_images_without_annotations: drop images whose target would be empty.

    Returns (per item):
        ``image``: :class:`~torchvision.tv_tensors.Image` ``(3, H, W) uint8``;
        ``target``: ``boxes`` :class:`~torchvision.tv_tensors.BoundingBoxes` ``(N, 4)`` float XYXY,
        ``labels`` ``(N,) int64`` in ``1..K``, ``masks`` :class:`~torchvision.tv_tensors.Mask`
        ``(N, H, W) uint8``, ``image_id`` int, ``area`` ``(N,) float32``,
        ``iscrowd`` ``(N,) int64``,
        ``orig_size`` ``(2,) int64`` (H, W before transforms).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        transforms: Callable[[Any, Any], tuple[Any, Any]] | None = None,
        *,
        include_crowd: bool = False,
        remove_images_without_annotations: bool = False,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: dataset root not found")
        self.split = split
        self.transforms = transforms
        self.include_crowd = include_crowd
        self.ann_file = annotation_path(self.root, split)
        self.image_dir = image_dir(self.root, split)
        data = load_coco_json(self.ann_file)
        if not data["images"]:
            raise DatasetError(f"{self.ann_file}: split {split!r} is empty (no images)")
        self.coco = make_coco_api(data)
        self.cat_to_label = contiguous_category_ids(data["categories"])
        self.label_to_cat = {label: cid for cid, label in self.cat_to_label.items()}
        names = {c["id"]: c["name"] for c in data["categories"]}
        self.classes = ("__background__", *(names[c] for c in sorted(self.cat_to_label)))
        ids = sorted(self.coco.imgs)
        if remove_images_without_annotations:
            ids = [i for i in ids if self._annotations(i)]
        self.ids = ids

    @property
    def num_classes(self) -> int:
        """Number of object classes K (labels are 1..K)."""
        return len(self.cat_to_label)

    def _annotations(self, image_id: int) -> list[dict[str, Any]]:
        anns = self.coco.imgToAnns.get(image_id, [])
        return [a for a in anns if (self.include_crowd or not a["iscrowd"])
                and a["bbox"][2] >= 1 and a["bbox"][3] >= 1]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[tv_tensors.Image, dict[str, Any]]:
        image_id = self.ids[index]
        info = self.coco.imgs[image_id]
        path = confined_path(self.image_dir, info["file_name"],
                             f"{self.ann_file}: image id {image_id} file_name")
        image = read_rgb(path)
        height, width = image.shape[:2]
        if (height, width) != (info["height"], info["width"]):
            raise DatasetError(f"{path}: image is {height}x{width} (HxW) but {self.ann_file} says "
                               f"{info['height']}x{info['width']}")
        anns = self._annotations(image_id)
        boxes = np.array([a["bbox"] for a in anns], dtype=np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        masks = np.stack([segmentation_to_mask(a["segmentation"], height, width) for a in anns]) \
            if anns else np.zeros((0, height, width), dtype=np.uint8)
        target = {
            "boxes": tv_tensors.BoundingBoxes(torch.from_numpy(boxes), format="XYXY",
                                              canvas_size=(height, width)),
            "labels": torch.tensor([self.cat_to_label[a["category_id"]] for a in anns],
                                   dtype=torch.int64),
            "masks": tv_tensors.Mask(torch.from_numpy(masks.astype(np.uint8))),
            "image_id": int(image_id),
            "area": torch.tensor([a["area"] for a in anns], dtype=torch.float32),
            "iscrowd": torch.tensor([a["iscrowd"] for a in anns], dtype=torch.int64),
            "orig_size": torch.tensor([height, width], dtype=torch.int64),
        }
        img = tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1).contiguous())
        if self.transforms is not None:
            img, target = self.transforms(img, target)
        return img, target

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
                f"n={len(self)}, classes={self.num_classes})")


def collate_detection(batch: Sequence[tuple[Any, Any]]) -> tuple[list[Any], list[Any]]:
    """Collate ``(image, target)`` pairs into two lists, as torchvision's detection models take."""
    images, targets = zip(*batch, strict=True) if batch else ((), ())
    return list(images), list(targets)
