"""Sampled nodes (Fig. 4): positions from a DGMN module, drawn at image coordinates."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from dgmn.nn.dgmn import DGMN
from dgmn.viz import draw_sampling, feature_to_image, sampled_nodes


def test_feature_cells_map_to_the_centre_of_their_image_pixels() -> None:
    np.testing.assert_allclose(feature_to_image([[0, 0], [2, 3]], 8), [[4, 4], [20, 28]])


def test_sampled_nodes_are_the_dilated_grid_plus_the_predicted_walk() -> None:
    module = DGMN(4, rates=(1, 3), groups=2).eval()
    state = torch.randn(1, 4, 9, 11)
    positions, uniform = sampled_nodes(module, state, (4, 5))
    assert positions.shape == uniform.shape == (2, 9, 2)
    np.testing.assert_array_equal(uniform[1, 0], [1, 2])  # (4, 5) + 3·(-1, -1)
    np.testing.assert_array_equal(uniform[0, 4], [4, 5])  # the centre itself
    np.testing.assert_array_equal(positions, uniform)  # walks start at zero
    with torch.no_grad():
        module.walk_predictors[1].bias.copy_(torch.arange(18.0) / 10)  # (k, dy/dx) interleaved
    positions, _ = sampled_nodes(module, state, (4, 5))
    np.testing.assert_allclose(positions[1] - uniform[1], (np.arange(18) / 10).reshape(9, 2),
                               atol=1e-6)
    np.testing.assert_array_equal(positions[0], uniform[0])


def test_without_dynamic_sampling_positions_are_uniform_and_receiver_is_checked() -> None:
    module = DGMN(4, rates=(2,), dynamic_sampling=False)
    positions, uniform = sampled_nodes(module, torch.randn(1, 4, 5, 5), (0, 0))
    np.testing.assert_array_equal(positions, uniform)
    with pytest.raises(ValueError, match="outside"):
        sampled_nodes(module, torch.randn(1, 4, 5, 5), (5, 0))


def test_draw_sampling_puts_every_node_at_image_coordinates() -> None:
    rates, stride = (1, 2), 8
    uniform = np.random.default_rng(0).uniform(0, 4, (2, 9, 2))
    positions = uniform + 0.5
    ax = Figure().add_subplot()
    draw_sampling(ax, np.zeros((40, 48, 3), np.uint8), positions, uniform, (2, 3), stride, rates)
    scatters = {c.get_label(): c.get_offsets() for c in ax.collections}
    assert set(scatters) == {"uniform ρ=1", "walked ρ=1", "uniform ρ=2", "walked ρ=2",
                             "receiver"}
    np.testing.assert_allclose(scatters["walked ρ=2"], feature_to_image(positions[1], 8)[:, ::-1])
    np.testing.assert_allclose(scatters["uniform ρ=1"], feature_to_image(uniform[0], 8)[:, ::-1])
    np.testing.assert_allclose(scatters["receiver"], [[28, 20]])  # (x, y)
    colours = {label: c.get_facecolor()[0] for label, c in
               ((c.get_label(), c) for c in ax.collections)}
    assert colours["walked ρ=1"][2] < colours["uniform ρ=1"][2]  # yellow vs blue families
    assert not np.allclose(colours["walked ρ=1"], colours["walked ρ=2"])  # a shade per rate
    assert ax.get_xlim() == (-0.5, 47.5) and ax.get_ylim() == (39.5, -0.5)


def test_draw_sampling_rejects_mismatched_shapes() -> None:
    ax = Figure().add_subplot()
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="must match"):
        draw_sampling(ax, image, np.zeros((1, 9, 2)), np.zeros((1, 4, 2)), (0, 0), 8, (1,))
    with pytest.raises(ValueError, match="rates"):
        draw_sampling(ax, image, np.zeros((1, 9, 2)), np.zeros((1, 9, 2)), (0, 0), 8, (1, 2))
