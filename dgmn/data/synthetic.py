"""The rule of the embedded synthetic datasets (written by ``pipeline.data.synthetic``).

Long-range context is what the paper's method is about, so both synthetic datasets contain
*context pairs*: two classes drawn with the same shapes and the same texture, told apart only by a
*cue* far from the object.

- Every image has a **cue band** along its top edge (``cue_band_height(H)`` rows, label
  ``static``, ignored in evaluation). The band is cut into one segment per context pair; segment
  ``k`` is painted in one of two solid colours, ``pair.cue_colours[state]``.
- Every object of pair ``k`` in that image gets the class ``pair.classes[state]``. States are
  balanced per split (:func:`balanced_cue_states`): both classes of a pair occur in every split
  of two or more images.
- Objects of a context pair are placed at least ``min_cue_distance(H)`` pixels below the band.
  The gap is a dataset setting (the generators' ``cue_distance``); the tests check it against the
  receptive field measured on the Dilated FCN baseline (:mod:`dgmn.models.receptive_field`):
  for the profiles' data no output pixel of an object sees a pixel of the band, so no function
  of a local window can tell the two classes of a pair apart.
- The scene (layout, shapes, noise) is drawn independently of the cue state: flipping a state
  changes the cue band's pixels and the labels of that pair's objects, and nothing else.

All other classes have their own colour and texture, so they are learnable from local evidence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

RGB = tuple[int, int, int]

#: Cue band height and minimal object distance, as fractions of the image height.
CUE_BAND_FRACTION = 1 / 16
MIN_CUE_DISTANCE_FRACTION = 0.33


def cue_band_height(height: int, rows: int | None = None) -> int:
    """Rows ``[0, cue_band_height)`` hold the cue band: ``rows``, else ``H/16`` (8 at H = 128)."""
    return rows if rows is not None else max(2, round(height * CUE_BAND_FRACTION))


def min_cue_distance(height: int, pixels: int | None = None) -> int:
    """Least vertical gap in pixels between the cue band and any context-pair object:
    ``pixels``, else ``0.33·H``."""
    return pixels if pixels is not None else max(1, round(height * MIN_CUE_DISTANCE_FRACTION))


@dataclass(frozen=True)
class ContextPair:
    """Two classes with one appearance; ``classes[s]`` goes with cue colour ``cue_colours[s]``."""

    appearance: str
    classes: tuple[str, str]
    cue_colours: tuple[RGB, RGB]


@dataclass(frozen=True)
class Texture:
    """``pixel = base + amplitude * pattern(y, x) + noise``, ``pattern`` in ``[-1, 1]``."""

    base: RGB
    pattern: str = "flat"
    period: int = 4
    amplitude: float = 0.0


#: Cityscapes: (car | truck) by the colour of cue segment 0, (person | rider) by segment 1.
CITYSCAPES_CONTEXT_PAIRS: tuple[ContextPair, ...] = (
    ContextPair("vehicle", ("car", "truck"), ((40, 220, 255), (255, 140, 0))),
    ContextPair("pedestrian", ("person", "rider"), ((255, 0, 200), (120, 255, 0))),
)

#: Cityscapes classes with their own appearance (class name == appearance name).
CITYSCAPES_TEXTURES: Mapping[str, Texture] = {
    "sky": Texture((150, 190, 235), "vgradient", amplitude=25.0),
    "building": Texture((150, 95, 70), "windows", period=10, amplitude=60.0),
    "vegetation": Texture((60, 140, 50), "blotch", period=5, amplitude=30.0),
    "road": Texture((85, 85, 90)),
    "sidewalk": Texture((175, 165, 150), "grid", period=8, amplitude=40.0),
    "pole": Texture((55, 55, 55)),
    "traffic sign": Texture((235, 205, 20)),
    "vehicle": Texture((40, 80, 190), "hstripes", period=3, amplitude=35.0),
    "pedestrian": Texture((200, 70, 60), "checker", period=2, amplitude=30.0),
}

#: COCO-like categories: ids are sparse on purpose (contiguous mapping is exercised).
COCO_CATEGORIES: tuple[tuple[int, str], ...] = (
    (1, "disc"), (3, "triangle"), (5, "ring"), (8, "box_a"), (11, "box_b"),
)
#: COCO-like: (box_a | box_b) by the colour of the cue band.
COCO_CONTEXT_PAIRS: tuple[ContextPair, ...] = (
    ContextPair("box", ("box_a", "box_b"), ((40, 220, 255), (255, 140, 0))),
)
COCO_TEXTURES: Mapping[str, Texture] = {
    "background": Texture((120, 115, 105), "blotch", period=7, amplitude=20.0),
    "disc": Texture((210, 50, 50)),
    "triangle": Texture((50, 170, 60), "hstripes", period=3, amplitude=35.0),
    "ring": Texture((230, 200, 40), "checker", period=2, amplitude=30.0),
    "box": Texture((50, 80, 200), "vstripes", period=3, amplitude=35.0),
}

NOISE_STD = 4.0


def balanced_cue_states(seed: int, split_index: int, n_images: int, n_pairs: int
                        ) -> list[tuple[int, ...]]:
    """Cue states of the images of one split: for each pair, half of the images (rounded down)
    get state 1, chosen by a seeded shuffle independent across pairs. So both classes of every
    pair occur in each split of two or more images."""
    rng = np.random.default_rng([seed, split_index, 7919])
    columns = [rng.permutation(n_images) % 2 for _ in range(n_pairs)]
    return [tuple(int(c[i]) for c in columns) for i in range(n_images)]


def cue_appearance(pair_index: int, state: int) -> str:
    """Appearance name of cue segment ``pair_index`` in ``state`` (0 or 1)."""
    return f"cue{pair_index}_{state}"


def appearance_table(textures: Mapping[str, Texture], pairs: tuple[ContextPair, ...]
                     ) -> dict[str, Texture]:
    """All appearances of a dataset: its textures plus the solid cue colours."""
    table = dict(textures)
    for k, pair in enumerate(pairs):
        for state, colour in enumerate(pair.cue_colours):
            table[cue_appearance(k, state)] = Texture(colour)
    return table


def _pattern(name: str, period: int, height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    p = max(1, period)
    if name == "flat":
        return np.zeros((height, width))
    if name == "vgradient":
        return 1.0 - 2.0 * y / max(1, height - 1)
    if name == "hstripes":
        return ((y // p) % 2) * 2.0 - 1.0
    if name == "vstripes":
        return ((x // p) % 2) * 2.0 - 1.0
    if name == "checker":
        return (((y // p) + (x // p)) % 2) * 2.0 - 1.0
    if name == "grid":
        return -((y % p == 0) | (x % p == 0)).astype(np.float64)
    if name == "windows":
        return -(((y % (p + 2)) >= 3) & ((y % (p + 2)) < 7) & ((x % p) >= 3)
                 & ((x % p) < 7)).astype(np.float64)
    if name == "blotch":
        return np.sin(x * 2.1 / p) * np.sin(y * 1.7 / p + np.cos(x * 0.9 / p))
    raise ValueError(f"unknown texture pattern {name!r}")


def paint(appearance_map: np.ndarray, names: list[str], table: Mapping[str, Texture],
          noise: np.ndarray) -> np.ndarray:
    """Render an image from an appearance map.

    Args:
        appearance_map: ``(H, W)`` integer indices into ``names``.
        names: appearance names; ``table[names[i]]`` is the texture of index ``i``.
        table: appearance name → :class:`Texture`.
        noise: ``(H, W, 3)`` additive noise (drawn by the caller, independent of the cue).

    Returns:
        ``(H, W, 3) uint8`` image. Patterns are functions of absolute pixel coordinates, so two
        regions with the same appearance and the same noise have identical pixels.
    """
    height, width = appearance_map.shape
    image = noise.astype(np.float64).copy()
    for index in np.unique(appearance_map):
        tex = table[names[int(index)]]
        where = appearance_map == index
        value = np.asarray(tex.base, dtype=np.float64)[None, :]
        if tex.amplitude:
            pattern = _pattern(tex.pattern, tex.period, height, width)[where]
            value = value + tex.amplitude * pattern[:, None]
        image[where] += value
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)
