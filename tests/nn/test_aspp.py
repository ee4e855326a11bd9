"""ASPP: branch layout, batch size 1 in eval and training."""

from __future__ import annotations

import torch
from torch import nn

from dgmn.nn.aspp import ASPP


def _convs(module: ASPP) -> list[nn.Conv2d]:
    return [next(m for m in branch.modules() if isinstance(m, nn.Conv2d))
            for branch in module.branches]


def test_branches() -> None:
    module = ASPP(16, channels=8, rates=(2, 5))
    convs = _convs(module)
    assert len(convs) == 4  # 1×1, two atrous, image pooling
    assert [c.kernel_size for c in convs] == [(1, 1), (3, 3), (3, 3), (1, 1)]
    assert [c.dilation for c in convs[1:3]] == [(2, 2), (5, 5)]
    assert [c.padding for c in convs[1:3]] == [(2, 2), (5, 5)]
    assert module.project[0].in_channels == 4 * 8
    assert module.out_channels == 16


def test_batch_size_one_in_eval_matches_a_larger_batch() -> None:
    torch.manual_seed(0)
    module = ASPP(16, channels=8, rates=(1, 3)).eval()
    x = torch.randn(3, 16, 7, 9)
    with torch.no_grad():
        torch.testing.assert_close(module(x[1:2]), module(x)[1:2])


def test_batch_size_one_in_training_uses_running_stats_for_pooling() -> None:
    torch.manual_seed(0)
    module = ASPP(16, channels=8, rates=(1, 3)).train()
    pool_bn = module.branches[-1].bn
    branch_bn = module.branches[0][1]
    y = module(torch.randn(1, 16, 7, 9))
    y.sum().backward()
    assert y.shape == (1, 16, 7, 9)
    assert torch.all(pool_bn.running_mean == 0) and pool_bn.num_batches_tracked == 0
    assert branch_bn.running_mean.abs().sum() > 0  # the other BNs still use batch stats
    assert module.branches[-1].conv.weight.grad is not None

    module(torch.randn(2, 16, 7, 9))  # batch of 2: plain batch norm again
    assert pool_bn.num_batches_tracked == 1


def test_pooling_branch_is_constant_over_the_map() -> None:
    module = ASPP(16, channels=8).eval()
    with torch.no_grad():
        pooled = module.branches[-1](torch.randn(2, 16, 7, 9))
    assert pooled.shape == (2, 8, 7, 9)
    torch.testing.assert_close(pooled, pooled[:, :, :1, :1].expand_as(pooled))
