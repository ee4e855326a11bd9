"""Label maps as RGB images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def colorize(label_map: np.ndarray, palette: np.ndarray | Sequence[Sequence[int]],
             ignore_color: Sequence[int] = (0, 0, 0)) -> np.ndarray:
    """Colour a label map with a palette.

    Args:
        label_map: ``(H, W)`` integer class ids (e.g. Cityscapes trainIds).
        palette: ``(N, 3)`` RGB colours (0-255) of classes ``0..N-1``.
        ignore_color: RGB of every id outside ``0..N-1`` (e.g. the ignore label 255).
    Returns:
        ``(H, W, 3) uint8``.
    """
    labels = np.asarray(label_map)
    if labels.ndim != 2:
        raise ValueError(f"label_map must be (H, W), got shape {labels.shape}")
    colours = np.asarray(palette, dtype=np.int64)
    if colours.ndim != 2 or colours.shape[1] != 3 or colours.shape[0] == 0:
        raise ValueError(f"palette must be (N, 3) RGB, got shape {colours.shape}")
    table = np.concatenate([colours, np.asarray(ignore_color, dtype=np.int64)[None]])
    table = np.clip(table, 0, 255).astype(np.uint8)
    ids = labels.astype(np.int64)
    index = np.where((ids >= 0) & (ids < len(colours)), ids, len(colours))
    return table[index]
