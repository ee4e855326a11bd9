"""COCO-style instance segmentation: annotation checks, contiguous labels and the dataset.

Layout, as on the official site::

    <root>/<split>2017/<file_name>                         (images)
    <root>/annotations/instances_<split>2017.json          (instances)

Category ids in COCO are sparse (1..90 for 80 classes); models see contiguous labels
``1..K`` (``0`` is background in torchvision's detection models), in increasing category-id
order (:func:`contiguous_category_ids`). pycocotools is imported lazily.
"""

from __future__ import annotations

import contextlib
import io
import json
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from dgmn.data.errors import DatasetError
from dgmn.data.io import read_rgb
from dgmn.data.masks import segmentation_to_mask

_REQUIRED = {
    "images": {"id": int, "file_name": str, "width": int, "height": int},
    "categories": {"id": int, "name": str},
    "annotations": {"id": int, "image_id": int, "category_id": int, "bbox": list,
                    "iscrowd": int, "area": numbers.Real, "segmentation": (list, dict)},
}


def annotation_path(root: str | os.PathLike, split: str) -> Path:
    """``<root>/annotations/instances_<split>2017.json``."""
    return Path(root) / "annotations" / f"instances_{split}2017.json"


def image_dir(root: str | os.PathLike, split: str) -> Path:
    """``<root>/<split>2017``."""
    return Path(root) / f"{split}2017"


def load_coco_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check an instances JSON (:func:`validate_coco`)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: annotation file not found")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: invalid JSON ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from None
    validate_coco(data, path)
    return data


def _check_fields(item: Any, where: str, fields: Mapping[str, Any]) -> None:
    if not isinstance(item, dict):
        raise DatasetError(f"{where}: expected an object, found {type(item).__name__}")
    for key, typ in fields.items():
        if key not in item:
            raise DatasetError(f"{where}: missing key {key!r}")
        value = item[key]
        if isinstance(value, bool) or not isinstance(value, typ):
            raise DatasetError(f"{where}.{key}: expected {_type_name(typ)}, found {value!r}")


def _type_name(typ: Any) -> str:
    if isinstance(typ, tuple):
        return " or ".join(t.__name__ for t in typ)
    return "number" if typ is numbers.Real else typ.__name__


def _check_segmentation(seg: Any, where: str, height: int, width: int) -> None:
    if isinstance(seg, dict):
        if "counts" not in seg or "size" not in seg:
            raise DatasetError(f"{where}: RLE needs 'counts' and 'size'")
        if list(seg["size"]) != [height, width]:
            raise DatasetError(f"{where}.size: {seg['size']} differs from the image's "
                               f"[{height}, {width}]")
        if not isinstance(seg["counts"], (str, list)):
            raise DatasetError(f"{where}.counts: expected a string or a list")
        return
    if not seg:
        raise DatasetError(f"{where}: empty polygon list")
    for k, poly in enumerate(seg):
        if (not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2
                or not all(isinstance(v, numbers.Real) for v in poly)):
            raise DatasetError(f"{where}[{k}]: a polygon is a flat list of >= 3 x,y pairs")


def validate_coco(data: Any, source: str | os.PathLike = "<json>") -> None:
    """Check an instances dict: keys and types, unique ids, references between images,
    annotations and categories, boxes and segmentations. Raises :class:`DatasetError` naming
    ``source`` and the offending key, e.g. ``"x.json: annotations[3] (id 7): image_id 9 is not
    in images"``."""
    if not isinstance(data, dict):
        raise DatasetError(f"{source}: top level must be a JSON object")
    for key in _REQUIRED:
        if key not in data:
            raise DatasetError(f"{source}: missing key {key!r}")
        if not isinstance(data[key], list):
            raise DatasetError(f"{source}: {key!r} must be a list")
    seen: dict[str, dict[int, Any]] = {}
    for key in ("images", "categories"):
        seen[key] = {}
        for i, item in enumerate(data[key]):
            where = f"{source}: {key}[{i}]"
            _check_fields(item, where, _REQUIRED[key])
            if item["id"] in seen[key]:
                raise DatasetError(f"{where}: duplicate id {item['id']}")
            seen[key][item["id"]] = item
    images, categories = seen["images"], seen["categories"]
    ann_ids: set[int] = set()
    for i, ann in enumerate(data["annotations"]):
        where = f"{source}: annotations[{i}]"
        _check_fields(ann, where, _REQUIRED["annotations"])
        where = f"{where} (id {ann['id']})"
        if ann["id"] in ann_ids:
            raise DatasetError(f"{where}: duplicate annotation id")
        ann_ids.add(ann["id"])
        image = images.get(ann["image_id"])
        if image is None:
            raise DatasetError(f"{where}: image_id {ann['image_id']} is not in images")
        if ann["category_id"] not in categories:
            raise DatasetError(f"{where}: category_id {ann['category_id']} is not in categories")
        bbox = ann["bbox"]
        if (len(bbox) != 4 or not all(isinstance(v, numbers.Real) for v in bbox)
                or bbox[2] < 0 or bbox[3] < 0):
            raise DatasetError(f"{where}.bbox: expected [x, y, w, h] with w, h >= 0, found {bbox}")
        if ann["iscrowd"] not in (0, 1):
            raise DatasetError(f"{where}.iscrowd: expected 0 or 1, found {ann['iscrowd']}")
        _check_segmentation(ann["segmentation"], f"{where}.segmentation",
                            image["height"], image["width"])


def contiguous_category_ids(categories: Sequence[Mapping[str, Any]]) -> dict[int, int]:
    """COCO category id → contiguous label ``1..K`` in increasing category-id order."""
    return {cid: i + 1 for i, cid in enumerate(sorted(int(c["id"]) for c in categories))}


def make_coco_api(data: dict[str, Any]) -> Any:
    """A ``pycocotools.coco.COCO`` over an in-memory dict (index built quietly)."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


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
        path = self.image_dir / info["file_name"]
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
