"""pycocotools mask helpers (numpy only, no torch).

pycocotools 2.0.x's compiled ``decode`` triggers numpy 2's "``__array__`` implementation doesn't
accept a copy keyword" DeprecationWarning on every call; it is harmless and only that warning is
silenced here.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np


@contextlib.contextmanager
def quiet_pycocotools() -> Iterator[None]:
    """Silence pycocotools' numpy-2 ``copy`` DeprecationWarning inside the block."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"__array__ implementation doesn't accept a copy",
                                category=DeprecationWarning)
        yield


def segmentation_to_mask(segmentation: Sequence[Sequence[float]] | Mapping[str, Any],
                         height: int, width: int) -> np.ndarray:
    """Rasterise COCO polygons, compressed or uncompressed RLE to ``(H, W) uint8``."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, Mapping):
        rle = segmentation
        if isinstance(rle["counts"], list):  # uncompressed (crowd) RLE
            rle = mask_utils.frPyObjects(dict(rle), height, width)
    else:
        rle = mask_utils.merge(mask_utils.frPyObjects([list(p) for p in segmentation],
                                                      height, width))
    with quiet_pycocotools():
        return mask_utils.decode(rle)
