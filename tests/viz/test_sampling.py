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


def _drawn(ax) -> dict[str, object]:
    """``{legend label: scatter collection}`` of what ``draw_sampling`` put on ``ax``."""
    return {c.get_label(): c for c in ax.collections}


def test_draw_sampling_puts_every_node_at_image_coordinates() -> None:
    rates, stride = (1, 2), 8
    uniform = np.random.default_rng(0).uniform(0, 3.5, (2, 9, 2))
    positions = uniform + 0.5
    ax = Figure().add_subplot()
    draw_sampling(ax, np.zeros((40, 48, 3), np.uint8), positions, uniform, (2, 3), stride, rates)
    scatters = {label: c.get_offsets() for label, c in _drawn(ax).items()}
    assert set(scatters) == {"uniform ρ=1", "walked ρ=1", "uniform ρ=2", "walked ρ=2",
                             "receiver"}
    np.testing.assert_allclose(scatters["walked ρ=2"], feature_to_image(positions[1], 8)[:, ::-1])
    np.testing.assert_allclose(scatters["uniform ρ=1"], feature_to_image(uniform[0], 8)[:, ::-1])
    np.testing.assert_allclose(scatters["receiver"], [[28, 20]])  # (x, y)
    assert ax.get_xlim() == (-0.5, 47.5) and ax.get_ylim() == (39.5, -0.5)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sorted(legend) == sorted(scatters)


def test_each_rate_has_its_own_colour_shared_by_its_grid_and_walks() -> None:
    rates = (1, 2, 3, 4, 5)
    uniform = np.random.default_rng(1).uniform(0, 4, (5, 9, 2))
    ax = Figure().add_subplot()
    draw_sampling(ax, np.zeros((40, 40, 3), np.uint8), uniform + 0.3, uniform, (2, 2), 8, rates)
    drawn = _drawn(ax)
    walked = [tuple(drawn[f"walked ρ={r}"].get_facecolor()[0]) for r in rates]
    grid = [tuple(drawn[f"uniform ρ={r}"].get_edgecolor()[0]) for r in rates]
    assert walked == grid  # one colour per rate: squares (grid) and circles (walks)
    assert len(set(walked)) == len(rates)  # distinct colours, not shades of one family
    receiver = tuple(drawn["receiver"].get_facecolor()[0])
    assert receiver not in walked
    # a qualitative palette: any two rate colours differ clearly in RGB, not only in lightness
    rgb = np.array(walked)[:, :3]
    gaps = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1)[np.triu_indices(len(rates), 1)]
    assert gaps.min() > 0.25


def test_rates_whose_nodes_all_fall_outside_the_image_are_not_in_the_legend() -> None:
    """A 5×8-cell map (stride 8): ρ=1 around the centre is on the image; of ρ=12 and 24 only
    the centre node is, and that is the receiver itself."""
    rates = (1, 12, 24)
    centre = np.array([2.0, 4.0])
    offsets = np.stack(np.meshgrid([-1, 0, 1], [-1, 0, 1], indexing="ij"), -1).reshape(-1, 2)
    uniform = np.stack([centre + r * offsets for r in rates])
    image = np.zeros((40, 64, 3), np.uint8)
    ax = Figure().add_subplot()
    draw_sampling(ax, image, uniform, uniform, centre, 8, rates)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["uniform ρ=1", "receiver"]
    assert [t.get_text() for t in ax.texts] == ["all nodes outside the image: ρ=12, ρ=24"]
    # the receiver is drawn once, not again as the centre of the grid
    assert len(_drawn(ax)["uniform ρ=1"].get_offsets()) == 8

    # with walks, the walked centre nodes of ρ=12 and 24 land on the image: those are drawn
    ax = Figure().add_subplot()
    draw_sampling(ax, image, uniform + 0.2, uniform, centre, 8, rates)
    drawn = _drawn(ax)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "uniform ρ=1", "walked ρ=1", "walked ρ=12", "walked ρ=24", "receiver"]
    assert len(drawn["walked ρ=12"].get_offsets()) == 1 and not ax.texts


def test_without_walks_nothing_is_labelled_walked() -> None:
    """A DGMN without dynamic sampling samples the uniform grid: no walked nodes, no links."""
    module = DGMN(4, rates=(1, 2), dynamic_sampling=False)
    positions, uniform = sampled_nodes(module, torch.randn(1, 4, 5, 6), (2, 3))
    ax = Figure().add_subplot()
    draw_sampling(ax, np.zeros((40, 48, 3), np.uint8), positions, uniform, (2, 3), 8, (1, 2))
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["uniform ρ=1", "uniform ρ=2", "receiver"]
    assert not ax.get_lines()


def test_draw_sampling_rejects_mismatched_shapes() -> None:
    ax = Figure().add_subplot()
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="must match"):
        draw_sampling(ax, image, np.zeros((1, 9, 2)), np.zeros((1, 4, 2)), (0, 0), 8, (1,))
    with pytest.raises(ValueError, match="rates"):
        draw_sampling(ax, image, np.zeros((1, 9, 2)), np.zeros((1, 9, 2)), (0, 0), 8, (1, 2))
