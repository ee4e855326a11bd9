"""DANet attention modules against explicit float64 references."""

from __future__ import annotations

import pytest
import torch

from dgmn.nn.danet import ChannelAttention, DualAttention, PositionAttention


def _softmax(row: torch.Tensor) -> torch.Tensor:
    weights = torch.exp(row - row.max())
    return weights / weights.sum()


@pytest.mark.parametrize("size", [(7, 9), (1, 1)])
def test_channel_attention_matches_explicit(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    module = ChannelAttention().double()
    with torch.no_grad():
        module.gamma.fill_(0.8)
    C = 6
    x = torch.randn(2, C, *size, dtype=torch.float64) * 0.3
    expected = torch.empty_like(x)
    for b in range(2):
        a = x[b].reshape(C, -1)
        for i in range(C):
            energy = torch.stack([a[i] @ a[j] for j in range(C)])
            # DANet's softmax(max - E) is, up to the shift, softmax(-E)
            weights = _softmax(-energy)
            mixed = sum(weights[j] * a[j] for j in range(C))
            expected[b, i] = x[b, i] + 0.8 * mixed.view(*size)
    with torch.no_grad():
        torch.testing.assert_close(module(x), expected, rtol=1e-10, atol=1e-10)


def test_position_attention_matches_explicit() -> None:
    torch.manual_seed(0)
    module = PositionAttention(6, 2).double()
    with torch.no_grad():
        module.gamma.fill_(-0.6)
    x = torch.randn(2, 6, 3, 4, dtype=torch.float64)
    with torch.no_grad():
        q, k, v = (conv(x).flatten(2) for conv in (module.query, module.key, module.value))
        expected = torch.empty_like(x)
        for b in range(2):
            for n in range(12):
                weights = _softmax(torch.stack([q[b, :, n] @ k[b, :, m] for m in range(12)]))
                expected[b, :, n // 4, n % 4] = x[b, :, n // 4, n % 4] - 0.6 * (v[b] @ weights)
        torch.testing.assert_close(module(x), expected, rtol=1e-10, atol=1e-10)


def test_dual_attention_sums_the_two_branches() -> None:
    torch.manual_seed(0)
    module = DualAttention(32, out_channels=5).eval()
    assert module.inter_channels == 8
    assert isinstance(module.branches[0][1], PositionAttention)
    assert isinstance(module.branches[1][1], ChannelAttention)
    x = torch.randn(2, 32, 7, 9)
    with torch.no_grad():
        branch_sum = module.branches[0](x) + module.branches[1](x)
        torch.testing.assert_close(module(x), module.project(branch_sum))
