"""Image and label readers that fully decode the file and fail with a :class:`DatasetError`
naming it (truncated or corrupt PNG/JPEG, wrong mode, missing file, or a header claiming more
pixels than PIL's decompression-bomb limit, ``Image.MAX_IMAGE_PIXELS`` × 2)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from dgmn.data.errors import DatasetError

_LABEL_MODES = {"L", "P"}


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        img = Image.open(path)
        img.load()  # decode everything now: truncated files fail here, not later
    except Image.DecompressionBombError as exc:
        raise DatasetError(f"{path}: refusing to decode ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot decode image ({exc})") from None
    return img


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image as ``(H, W, 3) uint8`` RGB."""
    img = _open(Path(path))
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.array(img, dtype=np.uint8)  # a writable copy (torch.from_numpy needs one)


def read_label(path: str | os.PathLike) -> np.ndarray:
    """Read a single-channel 8-bit label image (mode ``L``, or ``P`` indices) as
    ``(H, W) uint8``."""
    path = Path(path)
    img = _open(path)
    if img.mode not in _LABEL_MODES:
        raise DatasetError(
            f"{path}: label image must be single-channel 8-bit (mode L), found mode {img.mode}"
        )
    return np.array(img, dtype=np.uint8)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` from the header only (no full decode)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        with Image.open(path) as img:
            width, height = img.size
    except Image.DecompressionBombError as exc:
        raise DatasetError(f"{path}: refusing to decode ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DatasetError(f"{path}: cannot read image header ({exc})") from None
    return height, width


def check_same_size(image_path: Path, image_hw: tuple[int, int], label_path: Path,
                    label_hw: tuple[int, int]) -> None:
    """Raise if an image and its label differ in size."""
    if tuple(image_hw) != tuple(label_hw):
        raise DatasetError(
            f"{label_path}: label size {label_hw[0]}x{label_hw[1]} (HxW) differs from image "
            f"{image_path} size {image_hw[0]}x{image_hw[1]}"
        )
