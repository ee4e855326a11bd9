"""colorize: palette lookup, ignore colour, bad shapes."""

from __future__ import annotations

import numpy as np
import pytest

from dgmn.viz import colorize

PALETTE = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)


def test_ids_take_their_palette_colour_and_the_rest_the_ignore_colour() -> None:
    labels = np.array([[0, 1, 2], [255, 3, 1]], dtype=np.uint8)
    rgb = colorize(labels, PALETTE, ignore_color=(7, 8, 9))
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[0], PALETTE)
    np.testing.assert_array_equal(rgb[1], [[7, 8, 9], [7, 8, 9], [0, 255, 0]])


def test_negative_ids_and_list_palettes() -> None:
    rgb = colorize(np.array([[-1, 0]]), [[1, 2, 3]])
    np.testing.assert_array_equal(rgb, [[[0, 0, 0], [1, 2, 3]]])


@pytest.mark.parametrize(("labels", "palette"), [(np.zeros((2, 2, 1)), PALETTE),
                                                 (np.zeros((2, 2)), np.zeros((3, 4))),
                                                 (np.zeros((2, 2)), np.zeros((0, 3)))])
def test_bad_shapes_are_rejected(labels: np.ndarray, palette: np.ndarray) -> None:
    with pytest.raises(ValueError, match="must be"):
        colorize(labels, palette)
