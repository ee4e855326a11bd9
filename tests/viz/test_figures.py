"""Figures of dgmn.viz save as PNGs without pyplot: curves, prediction panels, sampling."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
from matplotlib.figure import Figure

from dgmn.viz import (
    Panel,
    curves_figure,
    draw_curves,
    prediction_figure,
    prediction_panel,
    sampling_figure,
)

PALETTE = np.array([[0, 0, 0], [255, 255, 255]], np.uint8)


def _saved(fig: Figure, path: Path) -> np.ndarray:
    fig.savefig(path, dpi=50)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return mpimg.imread(path)


def test_curves_one_panel_per_metric_one_line_per_model(tmp_path: Path) -> None:
    fig = curves_figure([Panel("training loss", "loss", {"a": ([1, 2, 3], [0.9, 0.5, 0.4])}),
                         Panel("validation AP box", "AP box",
                               {"a": ([1, 2], [3.0, 4.0]), "b": ([1, 2], [2.0, None])}),
                         Panel("validation AP mask", "AP mask", {"a": ([1, 2], [1.0, 2.0])})],
                        title="t")
    axes = fig.get_axes()
    assert [len(ax.get_lines()) for ax in axes] == [1, 2, 1]
    assert [ax.get_title() for ax in axes] == ["training loss", "validation AP box",
                                               "validation AP mask"]
    assert axes[1].get_ylabel() == "AP box" and np.isnan(axes[1].get_lines()[1].get_ydata()[1])
    assert _saved(fig, tmp_path / "c.png").shape[2] in (3, 4)


def test_a_curve_without_a_finite_value_is_neither_drawn_nor_in_the_legend() -> None:
    ax = Figure().add_subplot()
    draw_curves(ax, {"a": ([1, 2], [1.0, 2.0]), "b": ([1, 2], [None, float("nan")])},
                ylabel="mIoU")
    assert [line.get_label() for line in ax.get_lines()] == ["a"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a"]
    empty = Figure().add_subplot()
    draw_curves(empty, {"b": ([1], [None])}, ylabel="mIoU")
    assert not empty.get_lines() and empty.get_legend() is None


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
    assert len(fig.get_axes()) == 6 and not fig.legends
    assert _saved(fig, tmp_path / "p.png").ndim == 3
    with pytest.raises(ValueError, match="same non-zero number"):
        prediction_figure(images, labels[:1], labels, PALETTE)


def test_the_class_legend_names_the_colour_of_every_class_shown_and_no_other() -> None:
    palette = np.array([[128, 64, 128], [244, 35, 232], [70, 70, 70], [220, 20, 60]], np.uint8)
    names = ("road", "sidewalk", "building", "person")
    labels = np.zeros((1, 4, 4), np.uint8)
    labels[0, 0] = 255  # ignored pixels get no legend entry
    predictions = np.zeros((1, 4, 4), np.uint8)
    predictions[0, 1:, 2:] = 3
    fig = prediction_figure(np.zeros((1, 4, 4, 3), np.uint8), labels, predictions, palette,
                            class_names=names)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["road", "person"]
    patches = legend.get_patches()
    np.testing.assert_allclose([p.get_facecolor()[:3] for p in patches],
                               palette[[0, 3]] / 255.0)
    with pytest.raises(ValueError, match="3 class names for 4 colours"):
        prediction_figure(np.zeros((1, 4, 4, 3), np.uint8), labels, predictions, palette,
                          class_names=names[:3])


def test_sampling_figure(tmp_path: Path) -> None:
    grid = np.zeros((1, 9, 2))
    fig = sampling_figure(np.zeros((16, 32, 3), np.uint8), grid, grid, (0, 0), 8, (1,),
                          title="s")
    assert _saved(fig, tmp_path / "s.png").ndim == 3
