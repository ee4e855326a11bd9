"""Training and validation curves: one quantity against training iterations, one line per
model (Fig. 5), one panel per quantity."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Curve = tuple[Sequence[float], Sequence[float | None]]  # (iterations, values)


@dataclass(frozen=True)
class Panel:
    """One axes of :func:`curves_figure`: ``{model label: (iterations, values)}``."""

    title: str
    ylabel: str
    curves: Mapping[str, Curve] = field(default_factory=dict)


def _drawable(values: Sequence[float | None]) -> bool:
    return any(v is not None and math.isfinite(v) for v in values)


def draw_curves(ax: Any, curves: Mapping[str, Curve], *, ylabel: str, title: str = "",
                xlabel: str = "iteration") -> None:
    """Draw ``{model label: (iterations, values)}`` on ``ax`` with markers and a legend.

    Non-finite values (and ``None``) leave gaps; a curve without a finite value is not drawn
    and not in the legend; with nothing to draw, the axes stay empty and without a legend.
    """
    drawn = {label: curve for label, curve in curves.items() if _drawable(curve[1])}
    for label, (iterations, values) in drawn.items():
        ax.plot(list(iterations), [math.nan if v is None else v for v in values],
                marker="o", markersize=3, linewidth=1.5, label=label)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if drawn:
        ax.legend(fontsize="small")


def curves_figure(panels: Sequence[Panel], *, title: str = "",
                  panel_size: tuple[float, float] = (5.5, 4.0)) -> Any:
    """A ``Figure`` with one :func:`draw_curves` axes per :class:`Panel`, side by side."""
    from matplotlib.figure import Figure

    count = max(1, len(panels))
    fig = Figure(figsize=(max(panel_size[0] * count, 8.0), panel_size[1]), layout="constrained")
    axes = fig.subplots(1, count, squeeze=False)[0]
    for ax, panel in zip(axes, panels, strict=False):
        draw_curves(ax, panel.curves, ylabel=panel.ylabel, title=panel.title)
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize="medium")
    return fig
