"""The deformable message-passing baseline: the authors' reduced DCNv1 module (Table 2)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import deform_conv2d

from dgmn.nn import build_context_module
from dgmn.nn.deform_mp import DeformableMessage, DeformableMessagePassing
from dgmn.nn.reduced import ReducedResidual


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_zero_offsets_make_the_message_a_residual_conv():
    """DCNv1: no mask, so with zero offsets the message is the plain conv (not half of it)."""
    body = DeformableMessage(6).double()
    with torch.no_grad():
        body.offsets.weight.zero_()
    h = torch.randn(2, 6, 9, 10, dtype=torch.float64)
    torch.testing.assert_close(body(h), h + F.conv2d(h, body.weight, padding=1))
    with torch.no_grad():  # the offsets move the samples
        body.offsets.weight.normal_()
    assert not torch.allclose(body(h), h + F.conv2d(h, body.weight, padding=1))


def test_reduced_shell_around_the_deformable_message():
    module = DeformableMessagePassing(64).double()
    assert isinstance(module, ReducedResidual) and module.out_channels == 64
    assert module.body.in_channels == 16
    assert module.reduce[1].num_groups == module.expand[1].num_groups == 16  # gcd(32, 16)
    x = torch.randn(2, 64, 6, 7, dtype=torch.float64)
    reduce, body, expand = module.reduce, module.body, module.expand
    h = torch.relu(reduce[1](reduce[0](x)))
    message = deform_conv2d(h, body.offsets(h), body.weight, padding=1)
    want = x + torch.relu(expand[1](expand[0](h + message)))
    torch.testing.assert_close(module(x), want)
    assert all(m.bias is None for m in module.modules() if isinstance(m, nn.Conv2d))


def test_parameters_at_res4_of_resnet50():
    """C = 1024: 1×1 1024→256 + GN + 3×3 offsets 256→18 + 3×3 DCN 256→256 + 1×1 256→1024 + GN
    = 1,158,144 ≈ 1.16M (a full-width DCNv2 1024→1024 would be 9.69M)."""
    module = build_context_module("deformable_message_passing", 1024)
    assert module.reduce[1].num_groups == module.expand[1].num_groups == 32
    expected = (1024 * 256 + 2 * 256) + 9 * 256 * 18 + 9 * 256 * 256 + (256 * 1024 + 2 * 1024)
    assert count_params(module) == expected == 1_158_144


def test_initialisation_is_uniform_fan_in_and_offsets_start_random():
    body = DeformableMessage(64)
    bound = 1 / math.sqrt(9 * 64)
    for weight in (body.offsets.weight, body.weight):
        assert weight.abs().max() <= bound
        assert weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)


def test_trains_and_is_registered():
    module = build_context_module("deformable_message_passing", 32)
    x = torch.randn(2, 32, 5, 7)
    out = module(x)
    assert out.shape == x.shape
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in module.parameters())


@pytest.mark.parametrize(("kwargs", "match"), [({"kernel_size": 2}, "kernel_size"),
                                               ({"reduction": 3}, "reduction=3"),
                                               ({"norm_groups": 3}, "norm_groups=3"),
                                               ({"norm_groups": 0}, "norm_groups")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DeformableMessagePassing(32, **kwargs)
