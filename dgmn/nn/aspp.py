"""Atrous Spatial Pyramid Pooling (Chen et al., "Rethinking Atrous Convolution for Semantic Image
Segmentation", DeepLabv3, arXiv 2017).

The multi-rate context baseline of the DGMN paper (Table 1 "+ ASPP").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation

from dgmn._checks import check_positive_int, check_probability

__all__ = ["ASPP"]


class _ImagePooling(nn.Module):
    """Image-level features: global average pool → 1×1 conv → BN → ReLU → bilinear upsample.

    The pooled map has one value per channel and sample, so in training with batch size 1 the
    batch statistics of the BN are undefined (``nn.BatchNorm2d`` raises). In that case this branch
    normalises with the running statistics instead, without updating them; every other case (any
    batch size in eval, batch size ≥ 2 in training) is a plain ``nn.BatchNorm2d``. This keeps the
    DeepLabv3 layer set (and parameter count) and lets a single image pass in either mode.
    """

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(F.adaptive_avg_pool2d(x, 1))
        if self.training and y.shape[0] == 1:
            bn = self.bn
            y = F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                             training=False, eps=bn.eps)
        else:
            y = self.bn(y)
        y = F.relu(y)
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """DeepLabv3 ASPP.

    Parallel branches, each to ``channels`` with conv + BN + ReLU: one 1×1 conv, one 3×3 conv of
    dilation r for every r in ``rates``, and image pooling (see :class:`_ImagePooling` for its BN
    with batch size 1). Their concatenation is projected by 1×1 conv + BN + ReLU (+ dropout) to
    ``out_channels``.

    With ``in_channels=512`` and the defaults it has 4,460,032 parameters (4.46M); the paper's
    Table 1 reports +4.42M.

    Args:
        in_channels: C, input channels.
        channels: channels of every branch (256 in DeepLabv3).
        out_channels: output channels. Default ``in_channels``.
        rates: dilation rates of the 3×3 branches (DeepLabv3 at output stride 8: 12, 24, 36).
        dropout: dropout probability after the projection, in ``[0, 1)``.

    Shapes:
        ``(B, C, H, W) -> (B, out_channels, H, W)``.
    """

    def __init__(self, in_channels: int, channels: int = 256, out_channels: int | None = None,
                 rates: Sequence[int] = (12, 24, 36), dropout: float = 0.0) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("channels", channels)
        if out_channels is None:
            out_channels = in_channels
        check_positive_int("out_channels", out_channels)
        rates = tuple(rates)
        if len(rates) == 0:
            raise ValueError(f"rates must be a non-empty sequence of positive ints, got {rates=}")
        for rate in rates:
            check_positive_int("rates", rate)
        check_probability("dropout", dropout)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.rates = rates

        branches: list[nn.Module] = [Conv2dNormActivation(in_channels, channels, 1)]
        branches += [Conv2dNormActivation(in_channels, channels, 3, dilation=rate)
                     for rate in rates]
        branches.append(_ImagePooling(in_channels, channels))
        self.branches = nn.ModuleList(branches)
        self.project = Conv2dNormActivation(len(branches) * channels, out_channels, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        y = torch.cat([branch(x) for branch in self.branches], dim=1)
        return self.dropout(self.project(y))
