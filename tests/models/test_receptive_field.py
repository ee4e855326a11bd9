"""dgmn.models.receptive_field against hand-computed fields and a brute-force perturbation probe."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dgmn.models.receptive_field import ReceptiveField, receptive_field
from dgmn.models.registry import build_model


class _Upsampled(nn.Module):
    """``body`` followed by an upsampling back to the input size (a dense-prediction model)."""

    def __init__(self, body: nn.Module, mode: str) -> None:
        super().__init__()
        self.body, self.mode = body, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if self.mode == "nearest":
            return F.interpolate(out, size=x.shape[-2:], mode="nearest")
        return F.interpolate(out, size=x.shape[-2:], mode=self.mode, align_corners=False)


def test_single_3x3_conv_sees_one_pixel_each_side() -> None:
    assert receptive_field(nn.Conv2d(3, 2, 3, padding=1), (32, 32)) == ReceptiveField(1, 1, 1, 1)


def test_stacked_dilated_and_strided_convs_match_the_hand_computed_field() -> None:
    """conv 3×3 stride 2 (feature j sees input rows 2j-1..2j+1), conv 3×3 dilation 2 on the
    stride-2 grid (features j-2..j+2, so input rows 2j-5..2j+5), nearest upsampling (output row
    y reads feature y // 2): an even y sees y-5..y+5, an odd y sees y-6..y+4. The field over
    both phases: 6 up and left, 5 down and right."""
    body = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(4, 2, 3, padding=2, dilation=2))
    field = receptive_field(_Upsampled(body, "nearest"), (32, 32))
    assert field == ReceptiveField(up=6, down=5, left=6, right=5)
    assert field.radius == 6 and field.size == (12, 12)


def test_max_pooling_is_counted() -> None:
    """A 3×3 max pool (stride 1) after a 3×3 conv widens the field from 1 to 2 on each side,
    and its batch norm changes nothing."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.MaxPool2d(3, stride=1, padding=1), nn.Conv2d(4, 2, 1))
    assert receptive_field(model, (32, 32)) == ReceptiveField(2, 2, 2, 2)


def test_the_model_is_left_unchanged() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4),
                          nn.MaxPool2d(3, stride=1, padding=1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    receptive_field(model, (16, 16))
    assert isinstance(model[2], nn.MaxPool2d) and model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def _first_and_last(hits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the first and the last True along the last dimension of ``hits``."""
    n = hits.shape[-1]
    return hits.int().argmax(-1), n - 1 - hits.flip(-1).int().argmax(-1)


def _probed_field(model: nn.Module, size: int) -> ReceptiveField:
    """The field found by changing one input pixel at a time: output pixel (y, x) sees input
    pixel (i, j) when a large change of (i, j), up or down, changes (y, x) (large, so that a
    max-pooled activation it feeds becomes the window's maximum). The max reach over the output
    pixels whose dependence stays clear of the image border (so zero padding clips none)."""
    torch.manual_seed(1)
    image = torch.randn(1, 3, size, size, dtype=torch.float64)
    sees = torch.zeros(size * size, size * size, dtype=torch.bool)  # (input i·W+j, output y·W+x)
    with torch.no_grad():
        base = model(image)[0]
        for start in range(0, size * size, 128):
            index = torch.arange(start, min(start + 128, size * size))
            for change in (1e3, -1e3):
                batch = image.repeat(len(index), 1, 1, 1)
                batch[torch.arange(len(index)), :, index // size, index % size] += change
                changed = (model(batch) - base).abs().amax(1) > 1e-12  # (n, y, x)
                sees[index] |= changed.view(len(index), -1)
    depends = sees.T.view(size, size, size, size)  # (y, x, i, j)
    top, bottom = _first_and_last(depends.any(3))  # (y, x) each
    first, last = _first_and_last(depends.any(2))
    inside = (top > 0) & (first > 0) & (bottom < size - 1) & (last < size - 1)
    assert inside.sum() >= 16  # every phase of the stride-4 grid is among them
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return ReceptiveField(up=int((y - top)[inside].max()), down=int((bottom - y)[inside].max()),
                          left=int((x - first)[inside].max()),
                          right=int((last - x)[inside].max()))


def test_agrees_with_a_brute_force_perturbation_probe() -> None:
    """A strided, dilated net with max pooling and bilinear upsampling, random weights of both
    signs and a strictly monotone activation (so no dependence is switched off by the probe's
    input): the gradient method finds the field the perturbations reveal."""
    torch.manual_seed(0)
    body = nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.Tanh(),
        nn.MaxPool2d(2, stride=2),
        nn.Conv2d(4, 4, 3, padding=2, dilation=2), nn.Tanh(),
        nn.Conv2d(4, 2, 3, padding=1))
    model = _Upsampled(body, "bilinear").double().eval()
    probed = _probed_field(model, 48)
    assert probed.up > 8  # a field wider than the stride: the probe saw the whole stack
    assert receptive_field(model, (48, 48)) == probed


@functools.cache
def _dilated_fcn_field(backbone: str) -> ReceptiveField:
    model = build_model({"name": "dilated_fcn", "backbone": backbone, "weights": None,
                         "channels": 16, "num_classes": 3, "output_stride": 8,
                         "context": None, "context_kwargs": {}})
    return receptive_field(model, (96, 96), phases=8)


@pytest.mark.parametrize("backbone", ["resnet_micro", "resnet_nano"])
def test_narrow_backbones_keep_resnet_tiny_s_field(backbone: str) -> None:
    """The narrow CPU backbones change widths only: the Dilated FCN's field is resnet_tiny's."""
    assert _dilated_fcn_field(backbone) == _dilated_fcn_field("resnet_tiny")
