"""Synthetic street scenes in the Cityscapes layout, with real Cityscapes label ids.

Each image is a list of labelled polygons drawn in order (as in ``*_gtFine_polygons.json``), so
the label image is exactly what cityscapesscripts' ``json2labelImg`` draws from the JSON. The
rule, including the long-range cue deciding car/truck and person/rider, is documented in
:mod:`dgmn.data.synthetic` and ``docs/data.md``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dgmn.data import synthetic as rule
from dgmn.data.labels import label_id_of
from pipeline.common.progress import progress_bar
from pipeline.config.schema import ConfigError

Point = tuple[int, int]

#: Real Cityscapes city names per split (names must not contain ``_``).
CITIES: dict[str, tuple[str, ...]] = {
    "train": ("aachen", "bochum", "bremen", "cologne", "darmstadt"),
    "val": ("frankfurt", "lindau", "munster"),
    "test": ("berlin", "bielefeld", "bonn"),
}
SPLITS = ("train", "val", "test")
FRAME = 19  # the annotated frame of each Cityscapes snippet is _000019
#: heights of the context-pair objects, as fractions of the image height (least, most)
VEHICLE_HEIGHT = (0.15, 0.2)
PEDESTRIAN_HEIGHT = (0.17, 0.2)


@dataclass
class SyntheticCityscapesConfig:
    """Size and seed of the synthetic Cityscapes (defaults: a few seconds to write, ~1.5 MB)."""

    height: int = 128
    width: int = 256
    num_train: int = 24
    num_val: int = 8
    num_test: int = 0
    cities_per_split: int = 3
    seed: int = 0
    extra_gt_files: bool = True  # also *_gtFine_{polygons.json,instanceIds.png,color.png}
    #: rows of the cue band and least gap (px) between it and any context-pair object; None:
    #: the fractions of the height in dgmn.data.synthetic. The gap must exceed the baseline's
    #: receptive field (tests/pipeline/test_context_benchmark.py checks the profiles).
    cue_band: int | None = None
    cue_distance: int | None = None
    #: one cue state per image for every pair (car & person, or truck & rider), so both band
    #: segments say the same thing: twice the cue's area for one bit, what lets a context
    #: module find the cue within a CPU budget (docs/data.md). False: independent per pair.
    shared_cue: bool = False

    def __post_init__(self) -> None:
        pair_room(self.height, self.cue_band, self.cue_distance)  # fail at start-up

    def counts(self) -> dict[str, int]:
        return {"train": self.num_train, "val": self.num_val, "test": self.num_test}


@dataclass
class Shape:
    """One polygon of a scene; ``pair`` is the context-pair index or ``None``."""

    label: str | None  # class name; None until the cue decides it (context-pair objects)
    appearance: str
    polygon: list[Point]
    pair: int | None = None


@dataclass
class Scene:
    """A sampled layout: shapes in drawing order and the noise; independent of the cue."""

    height: int
    width: int
    shapes: list[Shape]
    noise: np.ndarray  # (H, W, 3) float
    band: int = 0  # rows of the cue band (drawn by resolve)


def pair_room(height: int, cue_band: int | None = None, cue_distance: int | None = None
              ) -> int:
    """Rows left for a context-pair object between ``band + cue_distance`` (its highest row)
    and the bottom row; taller objects are shortened to it.

    Raises:
        ConfigError: when the band or the gap is negative, or the room is below the least
            sampled pair height (no object of the pair could keep its size).
    """
    band = rule.cue_band_height(height, cue_band)
    gap = rule.min_cue_distance(height, cue_distance)
    room = height - 1 - band - gap
    least = max(VEHICLE_HEIGHT[0], PEDESTRIAN_HEIGHT[0]) * height
    if band < 1 or gap < 0 or room < least:
        raise ConfigError(
            f"synthetic cityscapes height={height}, cue_band={cue_band}, "
            f"cue_distance={cue_distance}: the cue band ({band} rows, must be >= 1) and the gap "
            f"below it ({gap} px, must be >= 0) leave {room} rows for context-pair objects "
            f"{least:.1f} px tall or more; lower cue_band or cue_distance, or raise height")
    return room


def _rect(x0: float, y0: float, x1: float, y1: float) -> list[Point]:
    x0, y0, x1, y1 = (round(v) for v in (x0, y0, x1, y1))
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _blob(rng: np.random.Generator, cx: float, cy: float, r: float, n: int = 9) -> list[Point]:
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = r * rng.uniform(0.75, 1.15, n)
    return [(round(cx + a * np.cos(t)), round(cy + a * np.sin(t)))
            for t, a in zip(angles, radii, strict=True)]


def _vehicle(x0: float, y1: float, w: float, h: float) -> list[Point]:
    c = h / 3
    pts = [(x0, y1), (x0, y1 - h + c), (x0 + c, y1 - h), (x0 + w - c, y1 - h),
           (x0 + w, y1 - h + c), (x0 + w, y1)]
    return [(round(x), round(y)) for x, y in pts]


def _pedestrian(cx: float, y1: float, w: float, h: float) -> list[Point]:
    head = w * 0.35
    pts = [(cx - w / 2, y1), (cx - w / 2, y1 - 0.7 * h), (cx - head, y1 - h), (cx + head, y1 - h),
           (cx + w / 2, y1 - 0.7 * h), (cx + w / 2, y1)]
    return [(round(x), round(y)) for x, y in pts]


def sample_scene(rng: np.random.Generator, height: int, width: int, *,
                 cue_band: int | None = None, cue_distance: int | None = None) -> Scene:
    """Sample a street layout. Context-pair objects keep ``label=None`` (see :func:`render`);
    none of their pixels lies above row ``band + cue_distance``."""
    H, W = height, width
    room = pair_room(H, cue_band, cue_distance)
    band = rule.cue_band_height(H, cue_band)
    y_pair = band + rule.min_cue_distance(H, cue_distance)  # highest row an object may use
    horizon = rng.uniform(0.38, 0.5) * H
    shapes = [
        Shape("sky", "sky", _rect(0, band, W - 1, horizon)),
        Shape("sidewalk", "sidewalk", _rect(0, horizon, W - 1, H - 1)),
    ]
    vx = rng.uniform(0.35, 0.65) * W
    top_half, bottom_half = 0.08 * W, rng.uniform(0.55, 0.8) * W
    shapes.append(Shape("road", "road", [
        (round(vx - top_half), round(horizon)), (round(vx + top_half), round(horizon)),
        (round(vx + bottom_half), H - 1), (round(vx - bottom_half), H - 1)]))
    # skyline: buildings and trees standing on the horizon
    x = 0.0
    while x < W:
        w = rng.uniform(0.08, 0.2) * W
        tallest = max(0.1 * H, min(0.35 * H, horizon - band - 2))
        h = rng.uniform(0.1 * H, tallest)
        if rng.random() < 0.7:
            shapes.append(Shape("building", "building", _rect(x, horizon - h, x + w - 1, horizon)))
        else:
            r = min(w / 2, h / 2)
            shapes.append(Shape("vegetation", "vegetation", _blob(rng, x + w / 2, horizon - r, r)))
        x += w
    # poles with signs on the pavement at both sides
    for _ in range(rng.integers(1, 4)):
        px = rng.uniform(0.02, 0.2) * W if rng.random() < 0.5 else rng.uniform(0.8, 0.98) * W
        bottom = rng.uniform(horizon + 0.1 * H, H - 1)
        top = max(band + 2, bottom - 0.35 * H)
        pw = max(2.0, W / 128)
        shapes.append(Shape("pole", "pole", _rect(px, top, px + pw - 1, bottom)))
        s = max(3.0, 0.05 * H)
        shapes.append(Shape("traffic sign", "traffic sign",
                            _rect(px - s / 2, top, px + s / 2 + pw - 1, top + s)))
    # context pair 0: vehicles on the road; pair 1: pedestrians, nearer the camera
    objects = []
    for _ in range(rng.integers(2, 5)):
        w, h = rng.uniform(0.2, 0.32) * W, min(rng.uniform(*VEHICLE_HEIGHT) * H, room)
        bottom = rng.uniform(max(horizon + 0.15 * H, y_pair + h), H - 1)
        x0 = rng.uniform(0, W - w)
        objects.append((bottom, Shape(None, "vehicle", _vehicle(x0, bottom, w, h), pair=0)))
    for _ in range(rng.integers(1, 4)):
        w, h = rng.uniform(0.07, 0.1) * W, min(rng.uniform(*PEDESTRIAN_HEIGHT) * H, room)
        bottom = rng.uniform(max(horizon + 0.08 * H, y_pair + h), H - 1)
        cx = rng.uniform(w, W - w)
        objects.append((bottom, Shape(None, "pedestrian", _pedestrian(cx, bottom, w, h), pair=1)))
    objects.sort(key=lambda item: item[0])  # far (higher up) first, near ones occlude them
    shapes.extend(shape for _, shape in objects)
    noise = rng.normal(0.0, rule.NOISE_STD, size=(H, W, 3))
    return Scene(H, W, shapes, noise, band)


def _cue_shapes(width: int, band: int, states: tuple[int, ...]) -> list[Shape]:
    n = len(states)
    edges = [round(k * width / n) for k in range(n + 1)]
    return [Shape("static", rule.cue_appearance(k, s),
                  _rect(edges[k], 0, edges[k + 1] - 1, band - 1))
            for k, s in enumerate(states)]


def resolve(scene: Scene, states: tuple[int, ...]) -> list[Shape]:
    """All shapes with final labels: context-pair objects take ``pair.classes[state]``; the cue
    band is appended (drawn last)."""
    pairs = rule.CITYSCAPES_CONTEXT_PAIRS
    shapes = [Shape(pairs[s.pair].classes[states[s.pair]] if s.pair is not None else s.label,
                    s.appearance, s.polygon, s.pair) for s in scene.shapes]
    return shapes + _cue_shapes(scene.width, scene.band, states)


def render(scene: Scene, states: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, list[Shape]]:
    """Draw a scene for given cue states.

    Returns:
        ``image`` ``(H, W, 3) uint8``, ``label_ids`` ``(H, W) uint8`` Cityscapes labelIds, and the
        resolved shapes (for the polygons JSON).
    """
    shapes = resolve(scene, states)
    table = rule.appearance_table(rule.CITYSCAPES_TEXTURES, rule.CITYSCAPES_CONTEXT_PAIRS)
    names = sorted(table)
    index = {name: i for i, name in enumerate(names)}
    size = (scene.width, scene.height)
    label_img = Image.new("L", size, label_id_of("unlabeled"))
    app_img = Image.new("L", size, index["road"])
    label_draw, app_draw = ImageDraw.Draw(label_img), ImageDraw.Draw(app_img)
    for s in shapes:  # same polygon calls as cityscapesscripts' json2labelImg
        label_draw.polygon(s.polygon, fill=label_id_of(s.label))
        app_draw.polygon(s.polygon, fill=index[s.appearance])
    image = rule.paint(np.asarray(app_img), names, table, scene.noise)
    return image, np.asarray(label_img), shapes


def polygons_json(shapes: list[Shape], height: int, width: int) -> dict:
    """The ``*_gtFine_polygons.json`` content."""
    return {"imgHeight": height, "imgWidth": width,
            "objects": [{"label": s.label, "polygon": [list(p) for p in s.polygon]}
                        for s in shapes]}


def _write_extra_gt(stem: Path, doc: dict) -> None:
    from cityscapesscripts.helpers.annotation import Annotation
    from cityscapesscripts.preparation.json2instanceImg import createInstanceImage
    from cityscapesscripts.preparation.json2labelImg import createLabelImage

    text = json.dumps(doc, indent=2)
    stem.with_name(stem.name + "_gtFine_polygons.json").write_text(text + "\n")
    annotation = Annotation()
    annotation.fromJsonText(text)
    # 16-bit like the official files (Pillow no longer writes 32-bit mode "I" as PNG)
    instance_ids = np.asarray(createInstanceImage(annotation, "ids"), dtype=np.uint16)
    Image.fromarray(instance_ids).save(stem.with_name(stem.name + "_gtFine_instanceIds.png"))
    createLabelImage(annotation, "color").save(stem.with_name(stem.name + "_gtFine_color.png"))


def cue_states(cfg: SyntheticCityscapesConfig, split_index: int, n: int
               ) -> list[tuple[int, ...]]:
    """The cue state of every pair in each of the ``n`` images of a split: balanced per split
    (:func:`dgmn.data.synthetic.balanced_cue_states`); with ``shared_cue`` pair 0's state for
    every pair."""
    n_pairs = len(rule.CITYSCAPES_CONTEXT_PAIRS)
    states = rule.balanced_cue_states(cfg.seed, split_index, n, n_pairs)
    if cfg.shared_cue:
        states = [(first,) * n_pairs for first, *_ in states]
    return states


def generate_cityscapes(root: str | Path, cfg: SyntheticCityscapesConfig, *, progress: bool = True
                        ) -> dict[str, int]:
    """Write the synthetic Cityscapes into ``root`` (an empty or new directory).

    Returns the number of images per split.
    """
    root = Path(root)
    n_pairs = len(rule.CITYSCAPES_CONTEXT_PAIRS)
    counts = {k: v for k, v in cfg.counts().items() if v > 0}
    with progress_bar(sum(counts.values()), "synthetic cityscapes", unit="img",
                      enabled=progress) as bar:
        for split, n in counts.items():
            split_index = SPLITS.index(split)
            cities = CITIES[split][: max(1, min(cfg.cities_per_split, len(CITIES[split])))]
            states = cue_states(cfg, split_index, n)
            for i in range(n):
                city = cities[i % len(cities)]
                stem_name = f"{city}_{i // len(cities):06d}_{FRAME:06d}"
                rng = np.random.default_rng([cfg.seed, split_index, i])
                scene = sample_scene(rng, cfg.height, cfg.width, cue_band=cfg.cue_band,
                                     cue_distance=cfg.cue_distance)
                image, label_ids, shapes = render(scene, states[i])
                img_dir = root / "leftImg8bit" / split / city
                gt_dir = root / "gtFine" / split / city
                img_dir.mkdir(parents=True, exist_ok=True)
                gt_dir.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image, "RGB").save(img_dir / f"{stem_name}_leftImg8bit.png")
                Image.fromarray(label_ids, "L").save(gt_dir / f"{stem_name}_gtFine_labelIds.png")
                if cfg.extra_gt_files:
                    doc = polygons_json(shapes, cfg.height, cfg.width)
                    _write_extra_gt(gt_dir / stem_name, doc)
                bar.update(1)
    return counts
