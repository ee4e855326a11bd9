"""The deformable message-passing baseline."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dgmn.nn import build_context_module
from dgmn.nn.deform_mp import DeformableMessagePassing


def test_zero_offsets_make_it_a_residual_dilated_conv():
    module = DeformableMessagePassing(6, rates=(1, 3)).double().eval()
    x = torch.randn(2, 6, 9, 10, dtype=torch.float64)
    # offset/mask predictors start at zero: offsets 0, mask sigmoid(0) = 0.5
    message = sum(beta * 0.5 * F.conv2d(x, conv.weight, padding=rate, dilation=rate)
                  for beta, conv, rate in zip(module.betas, module.messages, (1, 3), strict=True))
    want = torch.relu(x + module.norm(message))
    torch.testing.assert_close(module(x), want)


def test_trains_and_is_registered():
    module = build_context_module("deformable_message_passing", 8)
    x = torch.randn(2, 8, 5, 7)
    out = module(x)
    assert out.shape == x.shape
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in module.parameters())


@pytest.mark.parametrize(("kwargs", "match"), [({"rates": ()}, "rates"),
                                               ({"kernel_size": 2}, "kernel_size")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DeformableMessagePassing(8, **kwargs)
