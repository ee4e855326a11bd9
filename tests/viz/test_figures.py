"""Figures of dgmn.viz save as PNGs without pyplot: curves, prediction panels, sampling."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
from matplotlib.figure import Figure

from dgmn.viz import curves_figure, prediction_figure, prediction_panel, sampling_figure

PALETTE = np.array([[0, 0, 0], [255, 255, 255]], np.uint8)


def _saved(fig: Figure, path: Path) -> np.ndarray:
    fig.savefig(path, dpi=50)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return mpimg.imread(path)


def test_curves_one_panel_per_metric_one_line_per_model(tmp_path: Path) -> None:
    fig = curves_figure({"AP box": {"a": ([1, 2], [3.0, 4.0]), "b": ([1, 2], [2.0, None])},
                         "AP mask": {"a": ([1, 2], [1.0, 2.0])}}, title="t")
    axes = fig.get_axes()
    assert len(axes) == 2 and [len(ax.get_lines()) for ax in axes] == [2, 1]
    assert axes[0].get_ylabel() == "AP box" and np.isnan(axes[0].get_lines()[1].get_ydata()[1])
    assert _saved(fig, tmp_path / "c.png").shape[2] in (3, 4)


def test_prediction_panel_shows_colourised_labels() -> None:
    axes = Figure().subplots(1, 3)
    label = np.array([[0, 1], [255, 1]], np.uint8)
    prediction_panel(axes, np.zeros((2, 2, 3), np.uint8), label, label, PALETTE)
    shown = axes[1].get_images()[0].get_array()
    np.testing.assert_array_equal(shown[0, 1], [255, 255, 255])
    assert [ax.get_title() for ax in axes] == ["image", "ground truth", "prediction"]
    with pytest.raises(ValueError, match="share"):
        prediction_panel(axes, np.zeros((3, 2, 3), np.uint8), label, label, PALETTE)


def test_prediction_figure_has_a_row_per_image(tmp_path: Path) -> None:
    images = np.zeros((2, 8, 16, 3), np.uint8)
    labels = np.ones((2, 8, 16), np.uint8)
    fig = prediction_figure(images, labels, labels, PALETTE, title="x")
    assert len(fig.get_axes()) == 6
    assert _saved(fig, tmp_path / "p.png").ndim == 3
    with pytest.raises(ValueError, match="same non-zero number"):
        prediction_figure(images, labels[:1], labels, PALETTE)


def test_sampling_figure(tmp_path: Path) -> None:
    grid = np.zeros((1, 9, 2))
    fig = sampling_figure(np.zeros((16, 32, 3), np.uint8), grid, grid, (0, 0), 8, (1,),
                          title="s")
    assert _saved(fig, tmp_path / "s.png").ndim == 3
