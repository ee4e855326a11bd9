"""Params/MACs counting: exact counts on small layers, the paper's Table 1 DGMN rows and the
construction behind its DA+DW+DS figures."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import DeformConv2d

from dgmn.metrics import count_complexity
from dgmn.nn import build_context_module
from dgmn.nn.dgmn import DGMN
from dgmn.paper import paper_rows


def test_conv_macs_are_exact():
    counts = count_complexity(nn.Conv2d(8, 16, 3, padding=1), torch.randn(2, 8, 10, 12))
    assert counts.paper_macs == counts.full_macs == 2 * 8 * 16 * 9 * 10 * 12
    assert counts.params == 8 * 16 * 9 + 16


class Attention(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(x, x, x)


def test_attention_counts_its_n_squared_products():
    n, d = 50, 16
    counts = count_complexity(Attention(), torch.randn(1, 1, n, d))
    assert counts.paper_macs == 2 * n * n * d  # QKᵀ and AV


def test_deformable_conv_counts_conv_in_paper_and_sampling_in_full():
    layer = DeformConv2d(4, 6, 3, padding=1)
    x, offset = torch.randn(1, 4, 7, 9), torch.randn(1, 18, 7, 9)
    counts = count_complexity(layer, x, offset)
    conv = 4 * 6 * 9 * 7 * 9
    assert counts.paper_macs == conv
    assert counts.full_macs == conv + 4 * (4 * 9 * 7 * 9)


@pytest.mark.parametrize(
    ("kwargs", "params_m", "gflops"),
    [
        ({"rates": (1,), "dynamic_filters": False, "dynamic_sampling": False}, 0.57, 5.32),
        ({"rates": (1,), "groups": 4, "dynamic_sampling": False}, 0.73, 6.88),
    ],
)
def test_table1_dgmn_rows_in_paper_convention(kwargs, params_m, gflops):
    counts = count_complexity(DGMN(512, **kwargs), torch.randn(1, 512, 97, 97))
    assert round(counts.params_m, 2) == params_m
    assert round(counts.paper_gmacs, 2) == gflops
    assert counts.full_macs > counts.paper_macs  # sampling and aggregation come on top


def test_paper_convention_is_conv_weights_times_positions_for_full_dgmn():
    module = DGMN(16, rates=(1, 2, 3), groups=4)
    counts = count_complexity(module, torch.randn(1, 16, 9, 11))
    conv_weights = sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Conv2d))
    assert counts.paper_macs == conv_weights * 9 * 11
    # full adds: bilinear sampling (4 MACs per value) of the S·K neighbours of every channel
    # twice (the op and the deformable predictor) and the K-term aggregation.
    sampled = 3 * 9 * 16 * 9 * 11
    assert counts.full_macs == counts.paper_macs + 4 * sampled * 2 + sampled


def test_table1_full_dgmn_against_the_construction_that_gives_the_papers_row():
    """docs/model.md: ours is 2·C² (W_in, W_out) + per rate a 3×3 walk conv (2K = 18 outputs)
    and a 3×3 filter/affinity predictor (G·K + K = 45); the paper's 2.61M / 24.55G is exactly a
    1×1 (S+1)·C → C fuse of the input and the S messages plus one 3×3 C → 45 conv per rate."""
    module = build_context_module("dgmn_da_dw_ds", 512)
    weights = sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Conv2d))
    c, rates = 512, 5
    assert weights == 2 * c * c + rates * 9 * c * (18 + 45) == 1_975_808
    paper = (rates + 1) * c * c + rates * 9 * c * 45
    row = paper_rows("table1_cityscapes_val_ablation")[-1]
    assert round(paper / 1e6, 2) == row["params_m"]
    assert round(paper * 97 * 97 / 1e9, 2) == row["flops_g"]
