"""Stage ``preprocess``: check a fetched dataset and write the training-ready tree + manifest.

Cityscapes (real or synthetic)::

    <out>/leftImg8bit/<split>/<city>/*_leftImg8bit.png        (hard links, or crops)
    <out>/gtFine/<split>/<city>/*_gtFine_labelIds.png         (as fetched, or crops)
    <out>/gtFine/<split>/<city>/*_gtFine_labelTrainIds.png    (19 classes, 255 = ignore)

labelIds map to trainIds with cityscapesscripts' label table. ``max_images`` and ``crop`` make a
tiny subset for CI.

COCO (real or synthetic)::

    <out>/<split>2017/*.jpg                                    (hard links)
    <out>/annotations/instances_<split>2017.json               (filtered)

Categories keep their COCO ids in the JSON (so COCO evaluation still applies); the manifest lists
the contiguous labels ``1..K`` models use. Optional: a category subset, dropping crowd regions,
dropping images without (non-crowd) annotations, the first ``max_images`` images of each split.

Both write ``<out>/manifest.json`` (:mod:`pipeline.common.manifest`): config, source, classes,
per-split counts, and a sha256 per file. Every image and label is decoded and checked first; any
problem stops the stage with one error naming the file, and nothing is written under ``<out>``.

The stage is ``python -m pipeline.data preprocess <data> [key=value …]``
(:mod:`pipeline.data.stage`), configured by ``conf/preprocess/``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dgmn.data import cityscapes_files as cs_files
from dgmn.data import coco_format as coco
from dgmn.data import labels as cs
from dgmn.data.errors import DatasetError
from dgmn.data.io import check_same_size, image_size, read_label, read_rgb
from dgmn.data.paths import confined_path
from pipeline.common.config import to_jsonable
from pipeline.common.errors import StageError
from pipeline.common.fs import (
    atomic_directory,
    link_or_copy,
    reporting_write_errors,
)
from pipeline.common.manifest import FETCH_INFO, MANIFEST, write_manifest
from pipeline.common.progress import progress_bar
from pipeline.config.schema import PreprocessSettings

log = logging.getLogger("pipeline.data.preprocess")

KINDS = {"cityscapes": "cityscapes", "synthetic_cityscapes": "cityscapes",
         "coco2017": "coco", "synthetic_coco": "coco"}


@dataclass
class PreprocessConfig(PreprocessSettings):
    """What ``preprocess`` reads and writes: the dataset, its roots, and the stage's settings
    (:class:`~pipeline.config.schema.PreprocessSettings`). Paths default to
    ``data/raw/<dataset>`` and ``data/processed/<dataset>``."""

    dataset: str = "synthetic_cityscapes"
    raw_root: Path | None = None
    out_root: Path | None = None
    progress: bool = True

    def resolved_raw_root(self) -> Path:
        return Path(self.raw_root) if self.raw_root is not None else Path("data/raw") / self.dataset

    def resolved_out_root(self) -> Path:
        if self.out_root is not None:
            return Path(self.out_root)
        return Path("data/processed") / self.dataset


def _place(src: Path, dst: Path, link: bool) -> None:
    if link:
        link_or_copy(src, dst)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(src.read_bytes())


def _centre_crop(array: np.ndarray, crop: Sequence[int], source: Path) -> np.ndarray:
    ch, cw = (int(v) for v in crop)
    h, w = array.shape[:2]
    if ch > h or cw > w:
        raise StageError(f"{source}: crop {ch}x{cw} is larger than the image ({h}x{w})")
    top, left = (h - ch) // 2, (w - cw) // 2
    return array[top:top + ch, left:left + cw]


# --------------------------------------------------------------------------- Cityscapes


def _cityscapes(cfg: PreprocessConfig, raw: Path, out: Path) -> dict[str, Any]:
    if cfg.crop is not None and len(cfg.crop) != 2:
        raise StageError(f"crop must be [H, W], got {cfg.crop}")
    names = cs.train_id_names()
    plan = {}
    for split in cfg.splits:  # list and check every split before writing anything
        samples = cs_files.list_samples(raw, split, "labelIds")
        plan[split] = samples[: cfg.max_images] if cfg.max_images else samples
    stats: dict[str, Any] = {}
    total = sum(len(s) for s in plan.values())
    with progress_bar(total, "preprocess cityscapes", unit="img", enabled=cfg.progress) as bar:
        for split, samples in plan.items():
            pixels = np.zeros(256, dtype=np.int64)
            for image_path, label_path in samples:
                label = read_label(label_path)
                if cfg.verify_images or cfg.crop is not None:
                    image = read_rgb(image_path)
                    hw = image.shape[:2]
                else:
                    image, hw = None, image_size(image_path)
                check_same_size(image_path, hw, label_path, label.shape)
                train_ids = cs.label_ids_to_train_ids(label, label_path)
                out_image = out / image_path.relative_to(raw)
                out_label = out / label_path.relative_to(raw)
                suffixes = cs_files.TARGET_SUFFIXES
                out_train = out_label.with_name(out_label.name.replace(
                    suffixes["labelIds"], suffixes["labelTrainIds"]))
                out_image.parent.mkdir(parents=True, exist_ok=True)
                out_label.parent.mkdir(parents=True, exist_ok=True)
                if cfg.crop is not None:
                    Image.fromarray(_centre_crop(image, cfg.crop, image_path)).save(out_image)
                    Image.fromarray(_centre_crop(label, cfg.crop, label_path)).save(out_label)
                    train_ids = _centre_crop(train_ids, cfg.crop, label_path)
                else:
                    _place(image_path, out_image, cfg.link_images)
                    _place(label_path, out_label, cfg.link_images)
                Image.fromarray(train_ids, "L").save(out_train)
                pixels += np.bincount(train_ids.reshape(-1), minlength=256)
                bar.update(1)
            class_pixels = {name: int(pixels[i]) for i, name in enumerate(names)}
            class_pixels["ignore"] = int(pixels[cs.IGNORE_INDEX])
            stats[split] = {"images": len(samples), "class_pixels": class_pixels}
    return {
        "classes": [{"train_id": i, "name": n} for i, n in enumerate(names)],
        "ignore_index": cs.IGNORE_INDEX,
        "splits": stats,
    }


# --------------------------------------------------------------------------- COCO


def _filter_coco(cfg: PreprocessConfig, data: dict[str, Any], source: Path, split: str
                 ) -> dict[str, Any]:
    categories = sorted(data["categories"], key=lambda c: c["id"])
    if cfg.categories:
        by_name = {c["name"]: c for c in categories}
        unknown = [n for n in cfg.categories if n not in by_name]
        if unknown:
            raise StageError(f"{source}: categories {unknown} not found "
                             f"(have {sorted(by_name)})")
        categories = sorted((by_name[n] for n in cfg.categories), key=lambda c: c["id"])
    keep_cats = {c["id"] for c in categories}
    anns = [a for a in data["annotations"]
            if a["category_id"] in keep_cats and (cfg.crowd == "keep" or not a["iscrowd"])]
    images = sorted(data["images"], key=lambda i: i["id"])
    if cfg.drop_empty:
        with_objects = {a["image_id"] for a in anns if not a["iscrowd"]}
        images = [i for i in images if i["id"] in with_objects]
    if cfg.max_images:
        images = images[: cfg.max_images]
    if not images:
        raise DatasetError(f"{source}: split {split!r} has no images"
                           f"{' after filtering' if data['images'] else ''}")
    kept = {i["id"] for i in images}
    anns = sorted((a for a in anns if a["image_id"] in kept), key=lambda a: a["id"])
    extra = {k: v for k, v in data.items() if k not in ("images", "annotations", "categories")}
    return {**extra, "images": images, "annotations": anns, "categories": categories}


def _coco(cfg: PreprocessConfig, raw: Path, out: Path) -> dict[str, Any]:
    if cfg.crop is not None:
        raise StageError("crop applies to Cityscapes only")
    plan = {}
    categories = None
    for split in cfg.splits:  # read and check all annotation files first
        source = coco.annotation_path(raw, split)
        data = _filter_coco(cfg, coco.load_coco_json(source), source, split)
        if categories is None:
            categories = data["categories"]
        elif data["categories"] != categories:
            raise DatasetError(f"{source}: categories differ from those of split {cfg.splits[0]!r}")
        plan[split] = (source, data)
    stats: dict[str, Any] = {}
    total = sum(len(d["images"]) for _, d in plan.values())
    with progress_bar(total, "preprocess coco", unit="img", enabled=cfg.progress) as bar:
        for split, (source, data) in plan.items():
            src_dir, dst_dir = coco.image_dir(raw, split), coco.image_dir(out, split)
            for info in data["images"]:
                path = confined_path(src_dir, info["file_name"],
                                     f"{source}: image id {info['id']} file_name")
                hw = read_rgb(path).shape[:2] if cfg.verify_images else image_size(path)
                if tuple(hw) != (info["height"], info["width"]):
                    raise DatasetError(f"{path}: image is {hw[0]}x{hw[1]} (HxW) but {source} "
                                       f"says {info['height']}x{info['width']}")
                _place(path, dst_dir / path.relative_to(src_dir), cfg.link_images)
                bar.update(1)
            dst = coco.annotation_path(out, split)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(json.dumps(data, separators=(",", ":")) + "\n")
            names = {c["id"]: c["name"] for c in data["categories"]}
            per_cat = Counter(names[a["category_id"]] for a in data["annotations"])
            stats[split] = {
                "images": len(data["images"]),
                "annotations": len(data["annotations"]),
                "crowd_annotations": sum(a["iscrowd"] for a in data["annotations"]),
                "instances_per_category": {n: per_cat.get(n, 0) for n in names.values()},
            }
    labels = coco.contiguous_category_ids(categories or [])
    return {
        "classes": [{"label": labels[c["id"]], "category_id": c["id"], "name": c["name"]}
                    for c in categories or []],
        "splits": stats,
    }


# --------------------------------------------------------------------------- stage


def run(cfg: PreprocessConfig) -> Path:
    """Check ``cfg.resolved_raw_root()`` and write ``cfg.resolved_out_root()`` with its manifest.

    Raises:
        StageError / DatasetError: missing root, empty split, corrupt image, size mismatch, label
            id outside the table, invalid COCO JSON, an image ``file_name`` leading outside the
            image directory, a full disk, … (nothing is written under the out root).
    """
    kind = KINDS.get(cfg.dataset)
    if kind is None:
        raise StageError(f"dataset {cfg.dataset!r} is not one of {', '.join(KINDS)}")
    if not cfg.splits:
        raise StageError("no splits to preprocess")
    raw, out = cfg.resolved_raw_root(), cfg.resolved_out_root()
    if not raw.is_dir():
        raise StageError(f"{raw}: dataset root not found (run the fetch stage first)")
    try:
        fetch_info = json.loads((raw / FETCH_INFO).read_text())
    except (OSError, ValueError):
        fetch_info = None
    with (reporting_write_errors(out, f"writing the preprocessed {cfg.dataset}"),
          atomic_directory(out) as tmp):
        body = (_cityscapes if kind == "cityscapes" else _coco)(cfg, raw, tmp)
        manifest = write_manifest(tmp, {
            "stage": "preprocess", "dataset": cfg.dataset, "kind": kind,
            "config": {k: v for k, v in to_jsonable(cfg).items() if k != "progress"},
            "source": {"root": str(raw), "fetch_info": fetch_info},
            **body,
        }, progress=cfg.progress)
    log.info("wrote %s (%d files, digest %s)", out, manifest["num_files"], manifest["digest"][:12])
    return out


def load_manifest(out_root: str | Path) -> dict[str, Any]:
    """Read ``<out_root>/manifest.json``."""
    path = Path(out_root) / MANIFEST
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StageError(f"{path}: cannot read manifest ({exc})") from None


__all__ = ["PreprocessConfig", "load_manifest", "run"]
