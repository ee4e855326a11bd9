"""ContextBlock: identity at initialisation, attention pooling, transform."""

from __future__ import annotations

import torch

from dgmn.nn.gcnet import ContextBlock


def test_identity_at_initialisation() -> None:
    block = ContextBlock(16)
    x = torch.randn(2, 16, 7, 9)
    assert torch.equal(block(x), x)
    assert block.planes == 4


def test_attention_pooling_is_a_softmax_weighted_mean() -> None:
    torch.manual_seed(0)
    block = ContextBlock(16).double()
    x = torch.randn(2, 16, 7, 9, dtype=torch.float64)
    w = block.attention.weight[0, :, 0, 0]
    with torch.no_grad():
        pooled = block.spatial_pool(x)
        for b in range(2):
            logits = torch.tensor([[w @ x[b, :, i, j] for j in range(9)] for i in range(7)],
                                  dtype=torch.float64)
            weights = torch.exp(logits - logits.max())
            weights = weights / weights.sum()
            expected = (x[b] * weights).sum(dim=(1, 2))
            torch.testing.assert_close(pooled[b, :, 0, 0], expected, rtol=1e-10, atol=1e-10)
    assert pooled.shape == (2, 16, 1, 1)


def test_output_adds_the_same_transformed_context_everywhere() -> None:
    torch.manual_seed(0)
    block = ContextBlock(16).double()
    with torch.no_grad():
        block.transform[-1].weight.normal_()
        block.transform[-1].bias.normal_()
    x = torch.randn(2, 16, 7, 9, dtype=torch.float64)
    with torch.no_grad():
        delta = block(x) - x
        context = block.spatial_pool(x)[:, :, 0, 0]
        conv1, norm, _, conv2 = block.transform
        hidden = context @ conv1.weight[:, :, 0, 0].T + conv1.bias
        hidden = (hidden - hidden.mean(1, keepdim=True)) / torch.sqrt(
            hidden.var(1, unbiased=False, keepdim=True) + norm.eps)
        hidden = torch.relu(hidden * norm.weight[:, 0, 0] + norm.bias[:, 0, 0])
        expected = hidden @ conv2.weight[:, :, 0, 0].T + conv2.bias
    assert delta.abs().sum() > 0
    torch.testing.assert_close(delta, expected[:, :, None, None].expand_as(delta))
