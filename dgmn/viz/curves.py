"""Validation curves: one metric against training iterations, one line per model (Fig. 5)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Curve = tuple[Sequence[float], Sequence[float]]  # (iterations, values)


def draw_curves(ax: Any, curves: Mapping[str, Curve], *, ylabel: str, title: str = "",
                xlabel: str = "iteration") -> None:
    """Draw ``{model label: (iterations, values)}`` on ``ax`` with markers and a legend.

    Non-finite values leave gaps (matplotlib skips NaN); an empty mapping draws axes only.
    """
    for label, (iterations, values) in curves.items():
        ax.plot(list(iterations), [float("nan") if v is None else v for v in values],
                marker="o", markersize=3, linewidth=1.5, label=label)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if curves:
        ax.legend(fontsize="small")


def curves_figure(panels: Mapping[str, Mapping[str, Curve]], *, title: str = "",
                  panel_size: tuple[float, float] = (5.5, 4.0)) -> Any:
    """A ``Figure`` with one :func:`draw_curves` panel per ``{ylabel: curves}`` entry."""
    from matplotlib.figure import Figure

    count = max(1, len(panels))
    fig = Figure(figsize=(max(panel_size[0] * count, 8.0), panel_size[1]), layout="constrained")
    axes = fig.subplots(1, count, squeeze=False)[0]
    for ax, (ylabel, curves) in zip(axes, panels.items(), strict=False):
        draw_curves(ax, curves, ylabel=ylabel, title=f"validation {ylabel}")
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize="medium")
    return fig
