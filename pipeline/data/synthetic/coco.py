"""Synthetic shapes in the COCO 2017 layout (``<split>2017/*.jpg`` and
``annotations/instances_<split>2017.json``) with polygons, RLE masks and crowd regions.

Masks are rasterised with pycocotools and the image is painted from those masks, so pixels and
annotations agree exactly. ``box_a``/``box_b`` look the same and are told apart by the cue band at
the top of the image, at least ``cue_distance`` px above every box (see :mod:`dgmn.data.synthetic`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from dgmn.data import synthetic as rule
from dgmn.data.masks import segmentation_to_mask
from pipeline.common.progress import progress_bar
from pipeline.config.schema import ConfigError

SPLITS = ("train", "val")
#: image ids of a split start above this offset (unique across splits, as in COCO)
ID_OFFSET = {"train": 0, "val": 500_000}
_CATEGORY_ID = {name: cid for cid, name in rule.COCO_CATEGORIES}
#: object radii, as fractions of the image's shorter side (least, most)
OBJECT_RADIUS = (0.06, 0.12)


@dataclass
class SyntheticCocoConfig:
    """Size and seed of the synthetic COCO (defaults: about a second to write, < 0.5 MB)."""

    min_side: int = 128
    max_side: int = 192
    num_train: int = 16
    num_val: int = 8
    objects_per_image: list[int] = field(default_factory=lambda: [2, 5])
    crowd_prob: float = 0.25
    jpeg_quality: int = 95
    seed: int = 0
    #: rows of the cue band and least gap (px) between it and any box_a/box_b; None: the
    #: fractions of the height in dgmn.data.synthetic (the same rule as the Cityscapes layout)
    cue_band: int | None = None
    cue_distance: int | None = None

    def __post_init__(self) -> None:
        for height in self.sides():  # fail at start-up, not on the first image of that size
            _check_box_room(height, min(height, self.sides()[-1]), self.cue_band,
                            self.cue_distance)

    def sides(self) -> list[int]:
        """The image heights (and widths) :func:`sample_scene` draws from."""
        return [16 * k for k in range(self.min_side // 16, self.max_side // 16 + 1)]

    def counts(self) -> dict[str, int]:
        return {"train": self.num_train, "val": self.num_val}


def _check_box_room(height: int, shorter_side: int, cue_band: int | None,
                    cue_distance: int | None) -> None:
    """Raise :class:`ConfigError` unless the smallest box (radius ``OBJECT_RADIUS[0]`` of the
    shorter side, 2 px margin as :func:`_place` keeps) fits below the band and the gap."""
    band = rule.cue_band_height(height, cue_band)
    gap = rule.min_cue_distance(height, cue_distance)
    least = 2 * OBJECT_RADIUS[0] * shorter_side + 2
    if band < 1 or gap < 0 or band + gap + least >= height:
        raise ConfigError(
            f"synthetic coco2017 height={height}, cue_band={cue_band}, "
            f"cue_distance={cue_distance}: the cue band ({band} rows, must be >= 1) and the gap "
            f"below it ({gap} px, must be >= 0) leave no room for a box {least:.1f} px tall; "
            f"lower cue_band or cue_distance, or raise min_side")


@dataclass
class Instance:
    """One object: ``category`` is ``None`` for a context-pair object until the cue decides."""

    category: str | None
    appearance: str
    mask: np.ndarray  # (H, W) uint8
    segmentation: Any  # polygons (list of lists) or an RLE dict
    iscrowd: int = 0
    pair: int | None = None


@dataclass
class CocoScene:
    height: int
    width: int
    instances: list[Instance]
    noise: np.ndarray
    band: int  # rows of the cue band (painted by render)


def _poly_mask(poly: list[float], height: int, width: int) -> np.ndarray:
    return segmentation_to_mask([poly], height, width)


def _circle(h: int, w: int, cx: float, cy: float, r: float) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return ((x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2 <= r * r).astype(np.uint8)


def _polygon_points(shape: str, cx: float, cy: float, r: float, rng: np.random.Generator
                    ) -> list[float]:
    if shape == "disc":
        t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
        pts = np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)
    elif shape == "triangle":
        sign = 1 if rng.random() < 0.5 else -1
        pts = np.array([[cx, cy - sign * r], [cx + r, cy + sign * r], [cx - r, cy + sign * r]])
    else:  # box
        a = r * rng.uniform(0.7, 1.0)
        pts = np.array([[cx - r, cy - a], [cx + r, cy - a], [cx + r, cy + a], [cx - r, cy + a]])
    return [round(float(v), 2) for v in pts.reshape(-1)]


def _place(rng: np.random.Generator, occupied: np.ndarray, r: float, y_min: float
           ) -> tuple[float, float] | None:
    """A centre whose ``r``-box (+2 px margin) is inside the image below ``y_min`` and free."""
    h, w = occupied.shape
    if y_min + 2 * r + 2 >= h:
        return None  # no room below y_min
    for _ in range(50):
        cx, cy = rng.uniform(r + 1, w - r - 1), rng.uniform(y_min + r + 1, h - r - 1)
        y0, y1 = int(cy - r - 2), int(cy + r + 3)
        x0, x1 = int(cx - r - 2), int(cx + r + 3)
        if not occupied[max(y0, 0):y1, max(x0, 0):x1].any():
            occupied[max(y0, 0):y1, max(x0, 0):x1] = True
            return cx, cy
    return None


def sample_scene(rng: np.random.Generator, cfg: SyntheticCocoConfig) -> CocoScene:
    """Sample an image size and non-overlapping objects (no labels for context-pair objects)."""
    H = int(rng.integers(cfg.min_side // 16, cfg.max_side // 16 + 1)) * 16
    W = int(rng.integers(cfg.min_side // 16, cfg.max_side // 16 + 1)) * 16
    band = rule.cue_band_height(H, cfg.cue_band)
    y_pair = band + rule.min_cue_distance(H, cfg.cue_distance)  # highest row a box may use
    occupied = np.zeros((H, W), dtype=bool)
    occupied[: band + 2] = True
    instances: list[Instance] = []
    lo, hi = cfg.objects_per_image
    shapes = ("disc", "triangle", "ring", "box")
    for _ in range(int(rng.integers(lo, hi + 1))):
        shape = shapes[int(rng.integers(len(shapes)))]
        r = rng.uniform(*OBJECT_RADIUS) * min(H, W)
        spot = _place(rng, occupied, r, y_pair if shape == "box" else band + 2)
        if spot is None:
            continue
        cx, cy = spot
        if shape == "ring":
            mask = _circle(H, W, cx, cy, r) - _circle(H, W, cx, cy, 0.5 * r)
            rle = mask_utils.encode(np.asfortranarray(mask))
            segmentation: Any = {"size": [H, W], "counts": rle["counts"].decode("ascii")}
        else:
            poly = _polygon_points(shape, cx, cy, r, rng)
            mask, segmentation = _poly_mask(poly, H, W), [poly]
        pair = 0 if shape == "box" else None
        instances.append(Instance(None if pair is not None else shape, shape, mask, segmentation,
                                  pair=pair))
    if rng.random() < cfg.crowd_prob:  # a crowd of small discs, one iscrowd=1 region
        r = 0.1 * min(H, W)
        spot = _place(rng, occupied, r, band + 2)
        if spot is not None:
            cx, cy = spot
            mask = np.zeros((H, W), dtype=np.uint8)
            for _ in range(int(rng.integers(4, 8))):
                dx, dy = rng.uniform(-0.7 * r, 0.7 * r, 2)
                mask |= _circle(H, W, cx + dx, cy + dy, rng.uniform(0.2, 0.3) * r)
            instances.append(Instance("disc", "disc", mask, _uncompressed_rle(mask), iscrowd=1))
    noise = rng.normal(0.0, rule.NOISE_STD, size=(H, W, 3))
    return CocoScene(H, W, instances, noise, band)


def _uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO's crowd format: run lengths in column-major order, starting with zeros."""
    flat = mask.reshape(-1, order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0, *counts]
    return {"size": list(mask.shape), "counts": counts}


def resolve(scene: CocoScene, states: tuple[int, ...]) -> list[Instance]:
    """Instances with final categories: pair ``k`` objects get ``classes[states[k]]``."""
    pairs = rule.COCO_CONTEXT_PAIRS
    return [Instance(pairs[i.pair].classes[states[i.pair]] if i.pair is not None else i.category,
                     i.appearance, i.mask, i.segmentation, i.iscrowd, i.pair)
            for i in scene.instances]


def render(scene: CocoScene, states: tuple[int, ...]) -> tuple[np.ndarray, list[Instance]]:
    """Paint the image ``(H, W, 3) uint8`` for given cue states; return it and the instances."""
    table = rule.appearance_table(rule.COCO_TEXTURES, rule.COCO_CONTEXT_PAIRS)
    names = sorted(table)
    index = {name: i for i, name in enumerate(names)}
    app = np.full((scene.height, scene.width), index["background"], dtype=np.uint8)
    n = len(states)
    for k, s in enumerate(states):
        app[:scene.band, round(k * scene.width / n): round((k + 1) * scene.width / n)] = \
            index[rule.cue_appearance(k, s)]
    instances = resolve(scene, states)
    for inst in instances:
        app[inst.mask.astype(bool)] = index[inst.appearance]
    return rule.paint(app, names, table, scene.noise), instances


def _annotation(inst: Instance, ann_id: int, image_id: int) -> dict[str, Any]:
    rle = mask_utils.encode(np.asfortranarray(inst.mask))
    x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
    return {"id": ann_id, "image_id": image_id, "category_id": _CATEGORY_ID[inst.category],
            "segmentation": inst.segmentation, "area": float(mask_utils.area(rle)),
            "bbox": [x, y, w, h], "iscrowd": inst.iscrowd}


def generate_coco(root: str | Path, cfg: SyntheticCocoConfig, *, progress: bool = True
                  ) -> dict[str, int]:
    """Write the synthetic COCO into ``root``; return the number of images per split."""
    root = Path(root)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    counts = {k: v for k, v in cfg.counts().items() if v > 0}
    n_pairs = len(rule.COCO_CONTEXT_PAIRS)
    categories = [{"id": cid, "name": name, "supercategory": "shape"}
                  for cid, name in rule.COCO_CATEGORIES]
    with progress_bar(sum(counts.values()), "synthetic coco", unit="img", enabled=progress) as bar:
        for split, n in counts.items():
            split_index = SPLITS.index(split)
            states = rule.balanced_cue_states(cfg.seed, split_index, n, n_pairs)
            img_dir = root / f"{split}2017"
            img_dir.mkdir(parents=True, exist_ok=True)
            images, annotations = [], []
            for i in range(n):
                image_id = ID_OFFSET[split] + i + 1
                scene = sample_scene(np.random.default_rng([cfg.seed, split_index, i]), cfg)
                pixels, instances = render(scene, states[i])
                file_name = f"{image_id:012d}.jpg"
                Image.fromarray(pixels, "RGB").save(img_dir / file_name, quality=cfg.jpeg_quality,
                                                    subsampling=0)
                images.append({"id": image_id, "file_name": file_name, "height": scene.height,
                               "width": scene.width, "license": 1})
                annotations.extend(_annotation(inst, image_id * 100 + k, image_id)
                                   for k, inst in enumerate(instances))
                bar.update(1)
            doc = {
                "info": {"description": "dgmn synthetic COCO-style shapes", "version": "1.0",
                         "year": 2020, "contributor": "dgmn", "date_created": "2020-06-01"},
                "licenses": [{"id": 1, "name": "CC0 1.0", "url": "https://creativecommons.org/publicdomain/zero/1.0/"}],
                "images": images, "annotations": annotations, "categories": categories,
            }
            path = root / "annotations" / f"instances_{split}2017.json"
            path.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    return counts
