"""Qualitative segmentation results: image | ground truth | prediction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dgmn.viz.colorize import colorize

TITLES = ("image", "ground truth", "prediction")


def prediction_panel(axes: Sequence[Any], image: np.ndarray, label: np.ndarray,
                     prediction: np.ndarray, palette: np.ndarray | Sequence[Sequence[int]], *,
                     ignore_color: Sequence[int] = (0, 0, 0),
                     titles: Sequence[str] | None = TITLES) -> None:
    """Draw one image, its ground truth and the prediction on three ``axes``.

    Args:
        image: ``(H, W, 3) uint8``.
        label, prediction: ``(H, W)`` class ids; ids outside the palette get ``ignore_color``.
        palette: ``(N, 3)`` RGB of classes ``0..N-1``.
        titles: column titles, or ``None`` for none.
    """
    if len(axes) != 3:
        raise ValueError(f"prediction_panel needs 3 axes, got {len(axes)}")
    if np.shape(label) != np.shape(prediction) or np.shape(image)[:2] != np.shape(label):
        raise ValueError(f"image {np.shape(image)}, label {np.shape(label)} and prediction "
                         f"{np.shape(prediction)} must share (H, W)")
    pictures = (np.asarray(image), colorize(label, palette, ignore_color),
                colorize(prediction, palette, ignore_color))
    for index, (ax, picture) in enumerate(zip(axes, pictures, strict=True)):
        ax.imshow(picture, interpolation="nearest")
        ax.set_axis_off()
        if titles is not None:
            ax.set_title(titles[index])


def shown_classes(maps: Sequence[np.ndarray], count: int) -> list[int]:
    """The class ids ``0..count-1`` that occur in any of the label ``maps`` (sorted)."""
    present = np.unique(np.concatenate([np.ravel(m) for m in maps]).astype(np.int64))
    return [int(c) for c in present if 0 <= c < count]


def class_legend(fig: Any, class_ids: Sequence[int], class_names: Sequence[str],
                 palette: np.ndarray | Sequence[Sequence[int]]) -> None:
    """A legend under ``fig``'s axes: one colour patch per class id, named."""
    from matplotlib.patches import Patch

    colours = np.asarray(palette, dtype=np.float64) / 255.0
    handles = [Patch(facecolor=colours[c], edgecolor="black", linewidth=0.4,
                     label=class_names[c]) for c in class_ids]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 7),
                   fontsize="small", frameon=False)


def prediction_figure(images: np.ndarray, labels: np.ndarray, predictions: np.ndarray,
                      palette: np.ndarray | Sequence[Sequence[int]], *, title: str = "",
                      ignore_color: Sequence[int] = (0, 0, 0), width: float = 12.0,
                      class_names: Sequence[str] | None = None) -> Any:
    """A ``Figure`` with one :func:`prediction_panel` row per image (``(N, H, W, 3)`` images,
    ``(N, H, W)`` labels and predictions); titles on the first row only. With
    ``class_names`` (one per palette colour), a legend names the colour of every class that
    occurs in the labels or predictions (and no other)."""
    from matplotlib.figure import Figure

    count = len(images)
    if count == 0 or len(labels) != count or len(predictions) != count:
        raise ValueError(f"need the same non-zero number of images ({count}), labels "
                         f"({len(labels)}) and predictions ({len(predictions)})")
    if class_names is not None and len(class_names) != len(palette):
        raise ValueError(f"{len(class_names)} class names for {len(palette)} colours")
    height, wide = np.shape(images)[1:3]
    row_height = width / 3 * height / max(wide, 1) + 0.3
    legend_height = 0.9 if class_names is not None else 0.0
    fig = Figure(figsize=(width, row_height * count + (0.4 if title else 0) + legend_height),
                 layout="constrained")
    axes = fig.subplots(count, 3, squeeze=False)
    for row in range(count):
        prediction_panel(axes[row], images[row], labels[row], predictions[row], palette,
                         ignore_color=ignore_color, titles=TITLES if row == 0 else None)
    if class_names is not None:
        class_legend(fig, shown_classes([labels, predictions], len(palette)), class_names,
                     palette)
    if title:
        fig.suptitle(title)
    return fig
