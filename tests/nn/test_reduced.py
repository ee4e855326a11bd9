"""The reduced residual shell (C → C/r → C) and DGMN at res4 built in it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dgmn.nn import build_context_module
from dgmn.nn.dgmn import DGMN
from dgmn.nn.reduced import ReducedResidual


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_shell_formula_with_any_body():
    body = nn.Conv2d(8, 8, 3, padding=1)
    body.in_channels = 8
    module = ReducedResidual(32, body, reduction=4, norm_groups=2).double()
    x = torch.randn(2, 32, 5, 6, dtype=torch.float64)
    h = torch.relu(nn.functional.group_norm(module.reduce[0](x), 2, module.reduce[1].weight,
                                            module.reduce[1].bias))
    y = module.expand[0](body(h))
    want = x + torch.relu(nn.functional.group_norm(y, 2, module.expand[1].weight,
                                                   module.expand[1].bias))
    torch.testing.assert_close(module(x), want)


def test_dgmn_at_res4_is_a_reduced_residual_dgmn():
    """Table 2's DGMN at res4 of ResNet-50 (C = 1024, φ = {1, 4, 8, 12}, G = 4): the shell
    (0.53M) around a residual-form DGMN at 256 channels (0.58M) = 1.11M; the full projected
    module at C = 1024 would be 4.42M."""
    module = build_context_module("dgmn_reduced", 1024, rates=[1, 4, 8, 12], groups=4)
    assert isinstance(module, ReducedResidual) and module.out_channels == 1024
    inner = module.body
    assert isinstance(inner, DGMN) and inner.in_channels == 256 and inner.form == "residual"
    assert module.reduce[1].num_groups == module.expand[1].num_groups == 32
    shell = 2 * 1024 * 256 + 2 * (256 + 1024)
    assert count_params(inner) == 4 * (9 * 256 * 18 + 9 * 256 * 45 + 1)
    assert count_params(module) == shell + count_params(inner) == 1_107_460


def test_dgmn_at_res4_trains():
    module = build_context_module("dgmn_reduced", 64, rates=[1, 2], groups=4)
    x = torch.randn(2, 64, 6, 5)
    out = module(x)
    assert out.shape == x.shape
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in module.parameters())


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"reduction": 3}, "reduction=3 must divide in_channels=32"),
    ({"norm_groups": 3}, "norm_groups=3 must divide"),
    ({"reduction": 0}, "reduction"),
])
def test_bad_shell_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_context_module("dgmn_reduced", 32, groups=2, **kwargs)


def test_body_width_must_match():
    with pytest.raises(ValueError, match="in_channels // reduction = 8"):
        ReducedResidual(32, DGMN(16, groups=2))
