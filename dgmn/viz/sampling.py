"""The nodes sampled for one receiving node, drawn on the image (paper Fig. 4).

Positions are in feature-map cells ``(y, x)`` (the coordinates of :mod:`dgmn.ops.sampling`);
cell ``c`` of a map with output stride ``s`` covers image pixels ``[c·s, (c+1)·s)``, so it is
drawn at its centre ``(c + 0.5)·s``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Rate colours: matplotlib's qualitative ``tab10`` without its red (the receiver's colour).
RATE_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink",
               "tab:gray", "tab:olive", "tab:cyan")
RECEIVER_COLOR = "red"


def feature_to_image(coords: np.ndarray | Sequence[float], stride: float) -> np.ndarray:
    """Feature-cell coordinates ``(..., 2)`` → image pixel coordinates ``(c + 0.5)·stride``."""
    return (np.asarray(coords, dtype=np.float64) + 0.5) * float(stride)


def rate_color(index: int) -> str:
    """The colour of the ``index``-th rate (the palette repeats after nine rates)."""
    return RATE_COLORS[index % len(RATE_COLORS)]


def _check(positions: np.ndarray, uniform: np.ndarray, rates: Sequence[int]) -> None:
    if positions.ndim != 3 or positions.shape[-1] != 2:
        raise ValueError(f"positions must be (S, K, 2), got shape {positions.shape}")
    if uniform.shape != positions.shape:
        raise ValueError(f"uniform {uniform.shape} and positions {positions.shape} must match")
    if len(rates) != positions.shape[0]:
        raise ValueError(f"{len(rates)} rates for {positions.shape[0]} sets of positions")


def _inside(xy: np.ndarray, height: int, width: int) -> np.ndarray:
    """Which ``(..., 2)`` image points ``(y, x)`` lie on the ``height × width`` image."""
    y, x = xy[..., 0], xy[..., 1]
    return (y >= -0.5) & (y <= height - 0.5) & (x >= -0.5) & (x <= width - 0.5)


def draw_sampling(ax: Any, image: np.ndarray, positions: np.ndarray, uniform: np.ndarray,
                  receiver: Sequence[float], stride: float, rates: Sequence[int], *,
                  links: bool = True, marker_size: float = 22.0, legend: bool = True) -> None:
    """Draw the image, a receiving node and the nodes it samples at every rate.

    Each rate has its own colour (:data:`RATE_COLORS`): hollow squares mark its uniform grid,
    filled circles the walked positions (linked to their uniform node). Only nodes on the
    image are drawn, and only drawn things are in the legend: a rate whose nodes all fall
    outside the image is named in a note under it instead. Each rate's centre node is the
    receiver (one red star). Without walks (``positions`` equal to ``uniform``: a module
    without dynamic sampling) only the uniform grid is drawn.

    Args:
        ax: matplotlib ``Axes``.
        image: ``(H, W, 3) uint8`` image the feature map was computed from.
        positions: ``(S, K, 2)`` sampled positions ``(y, x)`` in feature cells, walks included
            (``p_i + ρ·δ_k + Δd_k``, Eq. 4).
        uniform: ``(S, K, 2)`` the uniform grid ``p_i + ρ·δ_k`` (no walks).
        receiver: ``(y, x)`` of the receiving node i in feature cells (red star).
        stride: output stride of the feature map (image pixels per cell).
        rates: the S sampling rates φ (legend labels).
        links: draw a thin line from each uniform node to where its walk took it.
    """
    positions = np.asarray(positions, dtype=np.float64)
    uniform = np.asarray(uniform, dtype=np.float64)
    _check(positions, uniform, rates)
    height, width = np.shape(image)[:2]
    ax.imshow(image)
    walked_xy = feature_to_image(positions, stride)
    uniform_xy = feature_to_image(uniform, stride)
    walked = not np.allclose(positions, uniform)
    # every rate's centre node (offset 0) is the receiver itself, drawn once as the receiver
    centre = np.all(np.isclose(uniform, np.asarray(receiver, dtype=np.float64)), axis=-1)
    outside = []
    for q, rate in enumerate(rates):
        color = rate_color(q)
        on_grid = _inside(uniform_xy[q], height, width) & ~centre[q]
        on_walk = _inside(walked_xy[q], height, width) if walked else np.zeros_like(on_grid)
        if not (on_grid.any() or on_walk.any()):
            outside.append(rate)
            continue
        if on_grid.any():
            ax.scatter(uniform_xy[q, on_grid, 1], uniform_xy[q, on_grid, 0], s=marker_size,
                       marker="s", facecolors="none", edgecolors=color, linewidths=1.2,
                       zorder=3, label=f"uniform ρ={rate}")
        if on_walk.any():
            if links:
                for (uy, ux), (wy, wx) in zip(uniform_xy[q, on_walk], walked_xy[q, on_walk],
                                              strict=True):
                    ax.plot([ux, wx], [uy, wy], color=color, linewidth=0.6, alpha=0.7)
            ax.scatter(walked_xy[q, on_walk, 1], walked_xy[q, on_walk, 0], s=marker_size,
                       marker="o", color=color, edgecolors="black", linewidths=0.4, zorder=4,
                       label=f"walked ρ={rate}")
    ry, rx = feature_to_image(receiver, stride)
    ax.scatter([rx], [ry], s=marker_size * 4, marker="*", color=RECEIVER_COLOR,
               edgecolors="white", linewidths=0.8, zorder=5, label="receiver")
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.set_axis_off()
    if outside:
        ax.text(0.0, -0.02, f"all nodes outside the image: {', '.join(f'ρ={r}' for r in outside)}",
                transform=ax.transAxes, ha="left", va="top", fontsize="x-small")
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
