"""NonLocal2d against an explicit float64 embedded-Gaussian computation."""

from __future__ import annotations

import math

import pytest
import torch

from dgmn.nn.non_local import NonLocal2d


def _conv1x1(conv: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """Explicit 1×1 conv: ``(C, H, W) -> (O, H·W)``."""
    out = conv.weight[:, :, 0, 0] @ x.reshape(x.shape[0], -1)
    if conv.bias is not None:
        out = out + conv.bias[:, None]
    return out


def _max_pool_2x2_ceil(x: torch.Tensor) -> torch.Tensor:
    """``(C, H, W) -> (C, M)`` with windows clipped at the border."""
    C, H, W = x.shape
    cols = [x[:, i:i + 2, j:j + 2].reshape(C, -1).amax(dim=1)
            for i in range(0, H, 2) for j in range(0, W, 2)]
    return torch.stack(cols, dim=1)


def _reference(block: NonLocal2d, x: torch.Tensor) -> torch.Tensor:
    """Eval-mode output, one sample at a time, no SDPA."""
    outputs = []
    for sample in x:
        C, H, W = sample.shape
        theta = _conv1x1(block.theta, sample)  # (C', N)
        phi = _conv1x1(block.phi, sample)
        g = _conv1x1(block.g, sample)
        if block.sub_sample:
            phi = _max_pool_2x2_ceil(phi.view(-1, H, W))
            g = _max_pool_2x2_ceil(g.view(-1, H, W))
        logits = theta.T @ phi  # (N, M), no 1/sqrt(d)
        weights = torch.exp(logits - logits.max(dim=1, keepdim=True).values)
        weights = weights / weights.sum(dim=1, keepdim=True)
        attended = g @ weights.T  # (C', N)
        z = block.out_conv.weight[:, :, 0, 0] @ attended  # (C, N)
        bn = block.out_bn
        z = (z - bn.running_mean[:, None]) / torch.sqrt(bn.running_var[:, None] + bn.eps)
        z = z * bn.weight[:, None] + bn.bias[:, None]
        outputs.append(sample + z.view(C, H, W))
    return torch.stack(outputs)


@pytest.mark.parametrize("sub_sample", [False, True])
@pytest.mark.parametrize("size", [(7, 9), (4, 4), (1, 3)])
def test_matches_explicit_embedded_gaussian(sub_sample: bool, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    block = NonLocal2d(16, inter_channels=6, sub_sample=sub_sample).double().eval()
    with torch.no_grad():
        for param in block.parameters():
            param.normal_()
        block.out_bn.running_mean.normal_()
        block.out_bn.running_var.uniform_(0.5, 2.0)
    assert block.out_bn.weight.abs().min() > 0
    x = torch.randn(2, 16, *size, dtype=torch.float64) * 0.5
    with torch.no_grad():
        torch.testing.assert_close(block(x), _reference(block, x), rtol=1e-10, atol=1e-10)


def test_attention_is_unscaled() -> None:
    """Large inter_channels: 1/sqrt(d) scaling would change the output visibly."""
    torch.manual_seed(1)
    block = NonLocal2d(8, inter_channels=64).double().eval()
    x = torch.randn(1, 8, 3, 5, dtype=torch.float64)
    with torch.no_grad():
        q = block.theta(x).flatten(2).transpose(1, 2)
        k = block.phi(x).flatten(2).transpose(1, 2)
        v = block.g(x).flatten(2).transpose(1, 2)
        unscaled = torch.softmax(q @ k.transpose(1, 2), dim=-1) @ v
        scaled = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(64), dim=-1) @ v
        got = block.attention(x).flatten(2).transpose(1, 2)
    torch.testing.assert_close(got, unscaled)
    assert not torch.allclose(got, scaled)


def test_identity_at_initialisation() -> None:
    block = NonLocal2d(16).train()
    x = torch.randn(2, 16, 7, 9)
    assert torch.equal(block(x), x)
    assert block.inter_channels == 8
