"""Contract shared by the baseline context modules: shapes, gradients, argument checks, sizes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dgmn.nn import build_context_module
from dgmn.nn.aspp import ASPP
from dgmn.nn.ccnet import CrissCrossAttention
from dgmn.nn.danet import DualAttention
from dgmn.nn.deform_conv import DeformableConvContext, ModulatedDeformConv2d
from dgmn.nn.gcnet import ContextBlock
from dgmn.nn.non_local import NonLocal2d

BASELINES = ["nonlocal", "aspp", "deformable", "gcnet", "ccnet", "danet"]
CHANNELS = 32  # the smallest width every default fits (DANet: 32 // 4 // 8 = 1 key channel)


def _randomise_zero_parameters(module: nn.Module) -> None:
    """Give random values to every all-zero parameter (γ's, zero-init convs, BN weights...)."""
    with torch.no_grad():
        for param in module.parameters():
            if not param.any():
                param.normal_(0.0, 0.5)


@pytest.mark.parametrize("name", BASELINES)
@pytest.mark.parametrize("size", [(7, 9), (1, 1), (1, 6), (5, 1)])
def test_shape_contract_eval(name: str, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    module = build_context_module(name, CHANNELS).eval()
    x = torch.randn(2, CHANNELS, *size)
    with torch.no_grad():
        y = module(x)
    assert isinstance(module.out_channels, int)
    assert y.shape == (2, module.out_channels, *size)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize(
    ("name", "kwargs", "out_channels"),
    [
        ("nonlocal", {"inter_channels": 3, "sub_sample": True}, CHANNELS),
        ("aspp", {"channels": 8, "out_channels": 5, "rates": (1, 2)}, 5),
        ("deformable", {}, CHANNELS // 2),
        ("deformable", {"out_channels": 7, "dilation": 2}, 7),
        ("gcnet", {"ratio": 1 / 16}, CHANNELS),
        ("ccnet", {"recurrence": 3, "reduction": 4}, CHANNELS),
        ("danet", {"out_channels": 6, "inter_channels": 16}, 6),
    ],
)
def test_shape_contract_kwargs(name: str, kwargs: dict, out_channels: int) -> None:
    module = build_context_module(name, CHANNELS, **kwargs)
    assert module.out_channels == out_channels
    y = module(torch.randn(2, CHANNELS, 7, 9))
    assert y.shape == (2, out_channels, 7, 9)


@pytest.mark.parametrize("name", BASELINES)
def test_forward_backward_at_initialisation(name: str) -> None:
    torch.manual_seed(0)
    module = build_context_module(name, CHANNELS).train()
    x = torch.randn(2, CHANNELS, 7, 9, requires_grad=True)
    module(x).square().sum().backward()
    assert torch.isfinite(x.grad).all()
    for pname, param in module.named_parameters():
        assert param.grad is not None, pname
        assert torch.isfinite(param.grad).all(), pname


@pytest.mark.parametrize("name", BASELINES)
def test_every_parameter_gets_a_gradient(name: str) -> None:
    torch.manual_seed(0)
    module = build_context_module(name, CHANNELS).train()
    _randomise_zero_parameters(module)
    x = torch.randn(2, CHANNELS, 7, 9, requires_grad=True)
    y = module(x)
    (y * torch.randn_like(y)).sum().backward()
    assert torch.isfinite(x.grad).all()
    for pname, param in module.named_parameters():
        assert param.grad is not None, pname
        assert torch.isfinite(param.grad).all(), pname
        assert param.grad.abs().sum() > 0, f"{pname} receives no gradient"


@pytest.mark.parametrize(
    ("factory", "argument"),
    [
        (lambda: NonLocal2d(0), "in_channels"),
        (lambda: NonLocal2d(-4), "in_channels"),
        (lambda: NonLocal2d(16, inter_channels=0), "inter_channels"),
        (lambda: ASPP(0), "in_channels"),
        (lambda: ASPP(16, channels=0), "channels"),
        (lambda: ASPP(16, out_channels=-1), "out_channels"),
        (lambda: ASPP(16, rates=()), "rates"),
        (lambda: ASPP(16, rates=(6, 0)), "rates"),
        (lambda: ASPP(16, rates=(6, 2.5)), "rates"),
        (lambda: ASPP(16, dropout=1.0), "dropout"),
        (lambda: DeformableConvContext(0), "in_channels"),
        (lambda: DeformableConvContext(16, out_channels=0), "out_channels"),
        (lambda: DeformableConvContext(16, dilation=0), "dilation"),
        (lambda: ModulatedDeformConv2d(16, 0), "out_channels"),
        (lambda: ModulatedDeformConv2d(16, 8, kernel_size=0), "kernel_size"),
        (lambda: ModulatedDeformConv2d(16, 8, stride=0), "stride"),
        (lambda: ModulatedDeformConv2d(16, 8, padding=-1), "padding"),
        (lambda: ModulatedDeformConv2d(16, 8, dilation=(1, 0)), "dilation"),
        (lambda: ModulatedDeformConv2d(16, 8, groups=3), "groups"),
        (lambda: ContextBlock(0), "in_channels"),
        (lambda: ContextBlock(16, ratio=0.0), "ratio"),
        (lambda: ContextBlock(16, ratio=1 / 32), "ratio"),
        (lambda: CrissCrossAttention(0), "in_channels"),
        (lambda: CrissCrossAttention(4), "in_channels"),
        (lambda: CrissCrossAttention(16, recurrence=0), "recurrence"),
        (lambda: CrissCrossAttention(16, reduction=0), "reduction"),
        (lambda: DualAttention(0), "in_channels"),
        (lambda: DualAttention(16), "inter_channels"),
        (lambda: DualAttention(32, inter_channels=-8), "inter_channels"),
        (lambda: DualAttention(32, out_channels=0), "out_channels"),
        (lambda: DualAttention(32, reduction=0), "reduction"),
        (lambda: DualAttention(32, dropout=-0.1), "dropout"),
    ],
)
def test_bad_arguments_raise_value_error(factory, argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        factory()


# Parameter counts at C = 512 (the paper's Table 1 width), derived layer by layer:
#   nonlocal:   θ, g 512·256+256; φ 512·256; W 256·512; BN 2·512
#   aspp:       1×1 512·256; 3 × 9·512·256; pool 512·256; proj 1280·512; BNs 5·2·256 + 2·512
#   deformable: 9·512·256; offset/mask 9·512·27+27; BN 2·256
#   gcnet:      512; 512·128+128; LN 2·128; 128·512+512
#   ccnet:      512·64+64; 512·64; 512·512+512; γ
#   danet:      2 × (9·512·128 + 256 + 9·128·128 + 256); PAM 128·16+16, 128·16, 128·128+128, γ;
#               CAM γ; 128·512+512
PARAMS_AT_512 = {
    "nonlocal": 525_824,
    "aspp": 4_460_032,
    "deformable": 1_304_603,
    "gcnet": 132_480,
    "ccnet": 328_257,
    "danet": 1_562_258,
}
# Table 1 "+Params"; the Non-local row matches the block plus one 3×3 512→512 conv (see its docs).
PAPER_PARAMS = {"deformable": 1.31e6, "aspp": 4.42e6, "nonlocal": 2.88e6 - 9 * 512 * 512}


@pytest.mark.parametrize(
    ("name", "expected"), PARAMS_AT_512.items(), ids=[f"{k}-{v}" for k, v in PARAMS_AT_512.items()]
)
def test_parameter_count_at_512(name: str, expected: int) -> None:
    module = build_context_module(name, 512)
    count = sum(p.numel() for p in module.parameters())
    assert count == expected
    if name in PAPER_PARAMS:
        assert count == pytest.approx(PAPER_PARAMS[name], rel=0.02)
