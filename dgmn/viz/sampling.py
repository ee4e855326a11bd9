"""The nodes sampled for one receiving node, drawn on the image (paper Fig. 4).

Positions are in feature-map cells ``(y, x)`` (the coordinates of :mod:`dgmn.ops.sampling`);
cell ``c`` of a map with output stride ``s`` covers image pixels ``[c·s, (c+1)·s)``, so it is
drawn at its centre ``(c + 0.5)·s``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

UNIFORM_CMAP = "Blues"
WALKED_CMAP = "YlOrBr"


def feature_to_image(coords: np.ndarray | Sequence[float], stride: float) -> np.ndarray:
    """Feature-cell coordinates ``(..., 2)`` → image pixel coordinates ``(c + 0.5)·stride``."""
    return (np.asarray(coords, dtype=np.float64) + 0.5) * float(stride)


def _shades(cmap_name: str, count: int, low: float, high: float) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps[cmap_name]
    return [cmap(v) for v in np.linspace(high, low, count)] if count > 1 else [cmap(high)]


def _check(positions: np.ndarray, uniform: np.ndarray, rates: Sequence[int]) -> None:
    if positions.ndim != 3 or positions.shape[-1] != 2:
        raise ValueError(f"positions must be (S, K, 2), got shape {positions.shape}")
    if uniform.shape != positions.shape:
        raise ValueError(f"uniform {uniform.shape} and positions {positions.shape} must match")
    if len(rates) != positions.shape[0]:
        raise ValueError(f"{len(rates)} rates for {positions.shape[0]} sets of positions")


def draw_sampling(ax: Any, image: np.ndarray, positions: np.ndarray, uniform: np.ndarray,
                  receiver: Sequence[float], stride: float, rates: Sequence[int], *,
                  uniform_cmap: str = UNIFORM_CMAP, walked_cmap: str = WALKED_CMAP,
                  links: bool = True, marker_size: float = 22.0, legend: bool = True) -> None:
    """Draw the image, a receiving node and the nodes it samples at every rate.

    Args:
        ax: matplotlib ``Axes``.
        image: ``(H, W, 3) uint8`` image the feature map was computed from.
        positions: ``(S, K, 2)`` sampled positions ``(y, x)`` in feature cells, walks included
            (``p_i + ρ·δ_k + Δd_k``, Eq. 4).
        uniform: ``(S, K, 2)`` the uniform grid ``p_i + ρ·δ_k`` (no walks).
        receiver: ``(y, x)`` of the receiving node i in feature cells (red point).
        stride: output stride of the feature map (image pixels per cell).
        rates: the S sampling rates φ (legend labels).
        uniform_cmap, walked_cmap: colour families of the uniform grid and the walked nodes;
            each rate gets its own shade (darker = smaller rate).
        links: draw a thin line from each uniform node to where its walk took it.
    """
    positions = np.asarray(positions, dtype=np.float64)
    uniform = np.asarray(uniform, dtype=np.float64)
    _check(positions, uniform, rates)
    height, width = np.shape(image)[:2]
    ax.imshow(image)
    walked_xy = feature_to_image(positions, stride)
    uniform_xy = feature_to_image(uniform, stride)
    blues = _shades(uniform_cmap, len(rates), 0.45, 0.95)
    yellows = _shades(walked_cmap, len(rates), 0.25, 0.7)
    for q, rate in enumerate(rates):
        if links:
            for (uy, ux), (wy, wx) in zip(uniform_xy[q], walked_xy[q], strict=True):
                ax.plot([ux, wx], [uy, wy], color=yellows[q], linewidth=0.6, alpha=0.7)
        ax.scatter(uniform_xy[q, :, 1], uniform_xy[q, :, 0], s=marker_size, marker="s",
                   color=blues[q], edgecolors="white", linewidths=0.4, zorder=3,
                   label=f"uniform ρ={rate}")
        ax.scatter(walked_xy[q, :, 1], walked_xy[q, :, 0], s=marker_size, marker="o",
                   color=yellows[q], edgecolors="black", linewidths=0.4, zorder=4,
                   label=f"walked ρ={rate}")
    ry, rx = feature_to_image(receiver, stride)
    ax.scatter([rx], [ry], s=marker_size * 2.5, color="red", edgecolors="white",
               linewidths=0.8, zorder=5, label="receiver")
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.set_axis_off()
    if legend:
        ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  borderaxespad=0.0)


def sampling_figure(image: np.ndarray, positions: np.ndarray, uniform: np.ndarray,
                    receiver: Sequence[float], stride: float, rates: Sequence[int], *,
                    title: str = "", width: float = 8.0) -> Any:
    """A ``Figure`` holding one :func:`draw_sampling` (legend to the right of the image)."""
    from matplotlib.figure import Figure

    height, wide = np.shape(image)[:2]
    fig = Figure(figsize=(width, max(2.5, width * 0.75 * height / max(wide, 1))),
                 layout="constrained")
    ax = fig.add_subplot()
    draw_sampling(ax, image, positions, uniform, receiver, stride, rates)
    if title:
        ax.set_title(title)
    return fig
