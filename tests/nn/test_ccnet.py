"""CrissCrossAttention against an explicit per-pixel float64 loop; reach of R passes."""

from __future__ import annotations

import pytest
import torch

from dgmn.nn.ccnet import CrissCrossAttention


def _reference_pass(module: CrissCrossAttention, x: torch.Tensor) -> torch.Tensor:
    """One criss-cross pass, pixel by pixel: gather row and column (self once), softmax, sum."""
    q, k, v = module.query(x), module.key(x), module.value(x)
    B, _, H, W = x.shape
    out = torch.zeros_like(x)
    for b in range(B):
        for h in range(H):
            for w in range(W):
                positions = [(g, w) for g in range(H)] + [(h, u) for u in range(W) if u != w]
                assert len(positions) == H + W - 1
                keys = torch.stack([k[b, :, i, j] for i, j in positions], dim=1)
                values = torch.stack([v[b, :, i, j] for i, j in positions], dim=1)
                logits = q[b, :, h, w] @ keys
                weights = torch.exp(logits - logits.max())
                weights = weights / weights.sum()
                out[b, :, h, w] = values @ weights
    return x + module.gamma * out


@pytest.mark.parametrize("size", [(5, 6), (1, 4), (3, 1), (1, 1)])
def test_single_pass_matches_explicit_loop(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    module = CrissCrossAttention(16, recurrence=1).double()
    with torch.no_grad():
        module.gamma.fill_(0.7)
    x = torch.randn(2, 16, *size, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(module(x), _reference_pass(module, x), rtol=1e-10, atol=1e-10)


def test_recurrence_reuses_the_same_weights() -> None:
    torch.manual_seed(0)
    module = CrissCrossAttention(16, recurrence=2).double()
    with torch.no_grad():
        module.gamma.fill_(0.5)
    x = torch.randn(1, 16, 4, 5, dtype=torch.float64)
    with torch.no_grad():
        expected = _reference_pass(module, _reference_pass(module, x))
        torch.testing.assert_close(module(x), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("recurrence", [1, 2])
def test_information_reach(recurrence: int) -> None:
    torch.manual_seed(0)
    module = CrissCrossAttention(16, recurrence=recurrence)
    with torch.no_grad():
        module.gamma.fill_(1.0)
    x = torch.randn(1, 16, 5, 6, requires_grad=True)
    module(x)[0, :, 0, 0].sum().backward()
    grad = x.grad[0].abs().sum(dim=0)  # (H, W)
    assert grad[0, 5] > 0 and grad[4, 0] > 0  # same row, same column
    far = grad[1:, 1:]  # different row and column
    if recurrence == 1:
        assert torch.all(far == 0)
    else:
        assert torch.all(far > 0)


def test_identity_at_initialisation() -> None:
    module = CrissCrossAttention(16)
    x = torch.randn(2, 16, 7, 9)
    assert torch.equal(module(x), x)
