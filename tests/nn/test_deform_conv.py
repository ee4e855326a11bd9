"""ModulatedDeformConv2d as a drop-in conv; DeformableConvContext."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dgmn.nn.deform_conv import DeformableConvContext, ModulatedDeformConv2d

CONV_CASES = [
    {"kernel_size": 3, "stride": 1, "padding": 1, "dilation": 1, "groups": 1},
    {"kernel_size": 3, "stride": 2, "padding": 2, "dilation": 2, "groups": 1},
    {"kernel_size": 3, "stride": 2, "padding": 1, "dilation": 1, "groups": 2},
    {"kernel_size": 1, "stride": 1, "padding": 0, "dilation": 1, "groups": 1},
    {"kernel_size": (3, 1), "stride": (1, 2), "padding": (1, 0), "dilation": (2, 1), "groups": 1},
]


@pytest.mark.parametrize("kwargs", CONV_CASES)
@pytest.mark.parametrize("size", [(7, 9), (8, 8), (5, 5)])
def test_shapes_match_conv2d(kwargs: dict, size: tuple[int, int]) -> None:
    x = torch.randn(2, 8, *size)
    expected = nn.Conv2d(8, 12, **kwargs)(x).shape
    assert ModulatedDeformConv2d(8, 12, **kwargs)(x).shape == expected


@pytest.mark.parametrize("kwargs", CONV_CASES)
def test_zero_offsets_are_a_conv_at_half_weight(kwargs: dict) -> None:
    """Zero-initialised predictor: offsets 0, mask sigmoid(0) = 0.5; bias is not masked."""
    torch.manual_seed(0)
    dcn = ModulatedDeformConv2d(8, 12, bias=True, **kwargs).double()
    x = torch.randn(2, 8, 7, 9, dtype=torch.float64)
    expected = F.conv2d(x, 0.5 * dcn.weight, dcn.bias, dcn.stride, dcn.padding, dcn.dilation,
                        dcn.groups)
    with torch.no_grad():
        offset, mask = dcn.offsets_and_mask(x)
        assert torch.all(offset == 0) and torch.all(mask == 0.5)
        torch.testing.assert_close(dcn(x), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("dy", "dx"), [(1, 0), (0, -1), (2, 1)])
@pytest.mark.parametrize("mask_logit", [0.0, 1.5])
def test_integer_offsets_shift_the_sampling_grid(dy: int, dx: int, mask_logit: float) -> None:
    """Offsets (dy, dx) on every tap read the input shifted by (dy, dx), zero outside."""
    torch.manual_seed(0)
    dcn = ModulatedDeformConv2d(4, 5, padding=1).double()
    taps = 9
    with torch.no_grad():
        dcn.offset_mask.bias[0:2 * taps:2] = dy
        dcn.offset_mask.bias[1:2 * taps:2] = dx
        dcn.offset_mask.bias[2 * taps:] = mask_logit
    H, W, pad, margin = 6, 7, 1, 3
    x = torch.randn(1, 4, H, W, dtype=torch.float64)
    padded = F.pad(x, [pad + margin] * 4)
    window = padded[:, :, margin + dy: margin + dy + H + 2 * pad,
                    margin + dx: margin + dx + W + 2 * pad]
    scale = torch.sigmoid(torch.tensor(mask_logit, dtype=torch.float64))
    expected = F.conv2d(window, scale * dcn.weight)
    with torch.no_grad():
        torch.testing.assert_close(dcn(x), expected, rtol=1e-10, atol=1e-10)


def test_loads_a_conv2d_state_dict() -> None:
    conv = nn.Conv2d(8, 16, 3, stride=2, padding=2, dilation=2, bias=False)
    dcn = ModulatedDeformConv2d(8, 16, 3, stride=2, padding=2, dilation=2)
    result = dcn.load_state_dict(conv.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert sorted(result.missing_keys) == ["offset_mask.bias", "offset_mask.weight"]
    assert torch.equal(dcn.weight, conv.weight)


def test_offset_predictor_learns_from_zero_init() -> None:
    torch.manual_seed(0)
    dcn = ModulatedDeformConv2d(4, 6, stride=2, dilation=2, padding=2)
    y = dcn(torch.randn(2, 4, 9, 7))
    (y * torch.randn_like(y)).sum().backward()
    offset_grad = dcn.offset_mask.bias.grad
    assert offset_grad[:18].abs().sum() > 0  # offsets
    assert offset_grad[18:].abs().sum() > 0  # mask logits


def test_context_module_defaults() -> None:
    module = DeformableConvContext(16)
    assert module.out_channels == 8
    assert module.conv.kernel_size == (3, 3)
    module = DeformableConvContext(16, dilation=3)
    assert module.conv.padding == (3, 3) and module.conv.dilation == (3, 3)
    assert module(torch.randn(2, 16, 7, 9)).shape == (2, 8, 7, 9)
