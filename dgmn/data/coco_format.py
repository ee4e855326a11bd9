"""The COCO instances format: paths of the official layout, reading and checking
``instances_<split>2017.json``, contiguous labels. No torch (pycocotools imported lazily), shared by
the dataset and the pipeline's preprocess stage."""

from __future__ import annotations

import contextlib
import io
import json
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dgmn.data.errors import DatasetError
from dgmn.data.paths import path_problem

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
    """Check an instances dict: keys and types, unique ids, image file names that stay inside
    the image directory, references between images, annotations and categories, boxes and
    segmentations. Raises :class:`DatasetError` naming
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
            if key == "images" and (problem := path_problem(item["file_name"])) is not None:
                raise DatasetError(f"{where}.file_name: {item['file_name']!r} {problem}; it must "
                                   f"name a file inside the split's image directory")
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
